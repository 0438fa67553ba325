"""Which masks the subject head learns from: human masks first, the teacher's elsewhere, and a left-out source
truly out (SOD and RITM Berkeley share photos)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pic_plugin.analysis import backbone
from pic_plugin.analysis.heads import FeatureHead
from pic_plugin.core.geometry import Box
from pic_plugin.research.datasets import SubjectPhoto
from pic_plugin.research.subject_head_training import (
    annotation_source,
    build_targets,
    mask_target,
    photo_key,
    teacher_masks,
    train_head,
)


def _photo(root: Path, source: str, image: str, group: str) -> SubjectPhoto:
    return SubjectPhoto(root / "photos" / image, root / "photos" / source / "masks" / f"{Path(image).stem}.png",
                        (100, 80), Box(0.1, 0.1, 0.5, 0.5), 0.2, group)


def test_a_left_out_source_takes_every_photo_it_annotates_with_it(tmp_path: Path) -> None:
    shared = _photo(tmp_path, "sod", "bsds/1.jpg", "bsds:1")
    human = [shared, _photo(tmp_path, "berkeley", "bsds/1.jpg", "bsds:1"),
             _photo(tmp_path, "berkeley", "bsds/2.jpg", "bsds:2"), _photo(tmp_path, "coco", "coco/3.jpg", "coco:3")]
    assert annotation_source(shared) == "sod"
    teacher = {photo_key(tmp_path / "photos" / name): tmp_path / f"t{i}.png"
               for i, name in enumerate(["bsds/1.jpg", "bsds/2.jpg", "bsds/9.jpg", "coco/3.jpg"])}

    everything = build_targets(human, teacher)
    assert [(t.image.name, t.soft) for t in everything] == [
        ("1.jpg", False), ("1.jpg", False), ("2.jpg", False), ("3.jpg", False), ("9.jpg", True)]  # human wins

    no_sod = build_targets(human, teacher, leave_out="sod")
    assert {t.image.name for t in no_sod} == {"2.jpg", "3.jpg", "9.jpg"}  # 1.jpg goes, Berkeley's mask too

    only_train = build_targets(human, teacher, human_filter=lambda p: p.group != "coco:3")
    assert [t.image.name for t in only_train if t.image.name == "3.jpg"] == []  # held out, not teacher-labelled
    held = build_targets(human, teacher, exclude={photo_key(tmp_path / "photos" / "bsds/9.jpg")})
    assert "9.jpg" not in {t.image.name for t in held}


def test_teacher_masks_come_from_the_manifest_and_must_exist(tmp_path: Path) -> None:
    assert teacher_masks(tmp_path) == {}
    (tmp_path / "masks").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "masks" / "a.png")
    manifest = {"photos_dir": str(tmp_path / "photos"),
                "photos": {"a.jpg": {"mask": "masks/a.png"}, "b.jpg": {"mask": "masks/b.png"}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert teacher_masks(tmp_path) == {photo_key(tmp_path / "photos" / "a.jpg"): tmp_path / "masks" / "a.png"}


def test_human_masks_are_binarized_teacher_masks_stay_soft_and_mirrors_flip(tmp_path: Path) -> None:
    m = np.zeros((8, 8), np.uint8)
    m[:, :2] = 100  # probability 0.39 on the left quarter
    Image.fromarray(m).save(tmp_path / "m.png")
    soft = mask_target(tmp_path / "m.png", True, False, (4, 4))
    hard = mask_target(tmp_path / "m.png", False, False, (4, 4))
    mirrored = mask_target(tmp_path / "m.png", True, True, (4, 4))
    assert torch.allclose(soft[:, 0], torch.full((4,), 100 / 255)) and soft[:, 1:].sum() == 0
    assert hard.sum() == 0  # below 0.5: not the subject in a human (binary) mask
    assert torch.allclose(mirrored[:, 3], soft[:, 0]) and mirrored[:, :3].sum() == 0


def test_keep_map_trains_only_the_subject_branch() -> None:
    """The shipped recipe: the reduced CNN map the prior was trained on stays bit for bit; the subject map learns."""
    torch.manual_seed(1)
    start = FeatureHead()
    c8, c16, c32 = backbone.TAP_CHANNELS
    taps = [torch.randn(1, c8, 8, 12), torch.randn(1, c16, 4, 6), torch.randn(1, c32, 2, 3)]
    target = torch.zeros(8, 12)
    target[2:6, 3:8] = 1.0
    head = train_head([(taps, target, 1.0)], epochs=3, log=lambda _: None, keep_map=start)
    with torch.inference_mode():
        map_before, logits_before = start(taps)
        map_after, logits_after = head(taps)
    assert torch.equal(map_before, map_after)
    assert not torch.allclose(logits_before, logits_after)
    for name, value in head.state_dict().items():
        assert torch.equal(value, start.state_dict()[name]) == (not name.startswith(("detail8.", "subject."))), name
