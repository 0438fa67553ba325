"""Loaders of the public cropping datasets and the paper's per-user CSV, on the files in ../shared/data."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from pic_plugin.core.geometry import Box, iou
from pic_plugin.research.datasets import load_fcdb, load_flms, load_gaicd, load_pic_user_csv

pytestmark = pytest.mark.shared


def test_gaicd_json(shared_data: Path) -> None:
    data = load_gaicd(shared_data / "crop-annotations" / "GAICD")
    assert len(data) == 1236
    assert sum(1 for d in data.values() if d.split == "train") == 1036
    with_images = {n: d for n, d in data.items() if d.image is not None}
    assert set(with_images) == {"302166.jpg", "309808.jpg"}
    item = data["302166.jpg"]
    assert item.size == (1024, 682) and item.split == "test"
    assert len(item.boxes) == 87 and item.best == (43.0, 28.0, 896.0, 597.0)
    assert all(b.is_valid() for b in item.normalized())


def test_gaicd_photo_file_variant(shared_data: Path) -> None:
    data = load_gaicd(shared_data / "photos" / "gaicd-cacnet" / "gaicd_crops_302166_309808.json")
    assert {n: len(d.boxes) for n, d in data.items()} == {"302166.jpg": 87, "309808.jpg": 90}
    assert data["309808.jpg"].image is not None and data["309808.jpg"].size == (1024, 774)
    assert data["309808.jpg"].best == (43.0, 97.0, 725.0, 742.0)


def test_gaicd_original_layout_round_trip(shared_data: Path, tmp_path: Path) -> None:
    src = load_gaicd(shared_data / "crop-annotations" / "GAICD")["309808.jpg"]
    ann = tmp_path / "GAICD" / "annotations" / "test"
    img = tmp_path / "GAICD" / "images" / "test"
    ann.mkdir(parents=True)
    img.mkdir(parents=True)
    # GAIC's text files are row-first: y1 x1 y2 x2 MOS; MOS -2 marks a crop to ignore.
    rows = [f"{y1:g} {x1:g} {y2:g} {x2:g} {s}" for (x1, y1, x2, y2), s in zip(src.boxes, src.scores, strict=True)]
    (ann / "309808.txt").write_text("\n".join([*rows, "0 0 10 10 -2"]) + "\n")
    (img / "309808.jpg").write_bytes(src.image.read_bytes())  # type: ignore[union-attr]
    data = load_gaicd(tmp_path / "GAICD")
    got = data["309808.jpg"]
    assert got.boxes == src.boxes and got.scores == src.scores
    assert got.split == "test" and got.size == (1024, 774)


def test_fcdb(shared_data: Path) -> None:
    crops = load_fcdb(shared_data / "crop-annotations" / "FCDB")
    assert sum(c.split == "train" for c in crops) == 1369
    assert sum(c.split == "test" for c in crops) == 345
    first = crops[0]
    assert first.name == "4910188666_04cf9f487d_b.jpg"
    # [x, y, w, h] = [266, 6, 757, 399] becomes x1 y1 x2 y2.
    assert first.box == (266.0, 6.0, 1023.0, 405.0)


def test_fcdb_bcmi_variant(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "crop-annotations" / "FCDB" / "annotations"
    for name in ("bcmi_image_crop.json", "bcmi_data_split.json"):
        (tmp_path / name).write_text((src / name).read_text())
    crops = load_fcdb(tmp_path)
    assert len(crops) == len(json.loads((src / "bcmi_image_crop.json").read_text()))
    assert {c.split for c in crops} <= {"train", "test", "human", None}


def test_flms_workers_disagree_as_documented(shared_data: Path) -> None:
    data = load_flms(shared_data / "crop-annotations" / "FLMS")
    assert len(data) == 500
    values = [iou(Box(*a), Box(*b)) for boxes in data.values() for a, b in combinations(boxes, 2)]
    assert np.mean(values) == pytest.approx(0.618, abs=0.01)  # PROVENANCE: mean pairwise IoU 0.618


def test_pic_per_user_csv(shared_data: Path) -> None:
    path = shared_data / "crop-annotations" / "PIC-per-user" / "test" / "10" / "train" / "A116FDKV1G0QU8_train.csv"
    images = load_pic_user_csv(path)
    assert len(images) == 10
    assert all(len(i.boxes) == 24 and i.user == "A116FDKV1G0QU8" for i in images)
    first = images[0]
    assert first.name == "ava_obj_1_2538.jpg"
    assert first.chosen == (48.0, 0.0, 336.0, 384.0)  # the row with score 4 (the user's first choice)
    assert first.scores.count(4.0) == 1 and len(first.order_pre) == 24


def test_pic_per_user_csv_rejects_other_files(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError):
        load_pic_user_csv(f)
