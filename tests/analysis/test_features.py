"""Backbone wiring, the feature head, pooling and the composition scorer's guarantees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_photo
from pic_plugin.analysis.backbone import load_backbone, normalize
from pic_plugin.analysis.composition import CompositionScorer, candidate_stats
from pic_plugin.analysis.extract import analyze
from pic_plugin.analysis.features import ImageAnalysis, IntegralMap, input_shape
from pic_plugin.analysis.heads import roi_rod_pool
from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.geometry import Box, contains_fraction, parse_ratio
from pic_plugin.imaging.decode import decode
from pic_plugin.imaging.faces import Face


@pytest.mark.parametrize("name,classes", [("chelsea.png", {281, 282, 285}), ("coffee.png", {967})])
def test_pretrained_backbone_recognizes_imagenet_classes(shared_data: Path, name: str, classes: set[int]) -> None:
    """The weights are wired right (padding, normalization, block order): known photos get their class."""
    img = Image.open(shared_data / "photos/pypi-skimage-imgaug/skimage" / name).convert("RGB").resize((224, 224))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None]
    with torch.no_grad():
        top = int(load_backbone(with_classifier=True).classify(normalize(x)).argmax())
    assert top in classes


def test_input_shape_multiples_of_32() -> None:
    for w, h in [(6000, 4000), (4000, 6000), (10000, 2000), (500, 500), (33, 3000)]:
        iw, ih = input_shape(w, h)
        assert iw % 32 == 0 and ih % 32 == 0 and max(iw, ih) <= 512 and min(iw, ih) >= 32


def test_analysis_round_trips_through_bytes(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    make_photo().save(p)
    a = analyze(decode(p))
    b = ImageAnalysis.from_bytes(a.to_bytes())
    assert b.size == a.size and b.fmap.shape == a.fmap.shape and np.allclose(b.subject, a.subject, atol=1e-3)
    assert len(a.to_bytes()) < 40_000  # what the catalog caches per photo stays small


def test_subject_map_on_held_out_real_photos(shared_data: Path) -> None:
    """The shipped head finds human-annotated subjects on photos it was not trained on (fixed test split)."""
    from pic_plugin.research.datasets import subject_photos

    ious, centre_ious = [], []
    for photo in [p for p in subject_photos(shared_data) if p.split == "test"][:60]:
        a = analyze(decode(photo.image), with_faces=False)
        h, w = a.subject.shape
        mask = np.asarray(Image.open(photo.mask).convert("L").resize((w, h), Image.Resampling.BOX)) >= 128
        yy, xx = np.mgrid[0:h, 0:w]
        centre = ((xx + 0.5) / w - 0.5) ** 2 + ((yy + 0.5) / h - 0.5) ** 2 < 0.08
        for pred, out in ((a.subject >= 0.5, ious), (centre, centre_ious)):
            union = (pred | mask).sum()
            out.append((pred & mask).sum() / union if union else 1.0)
    assert np.mean(ious) > 0.45
    assert np.mean(ious) > np.mean(centre_ious) + 0.15


def test_roi_rod_pool_shapes_and_rod_excludes_roi() -> None:
    fmap = torch.zeros(2, 8, 12)
    fmap[:, :, :6] = 1.0  # left half lit
    boxes = torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]])
    roi, rod = roi_rod_pool(fmap, boxes, k=3)
    assert roi.shape == (2, 2, 3, 3) and rod.shape == (2, 2, 3, 3)
    assert roi[0].mean() > 0.9 and roi[1].mean() < 0.1
    assert rod[0].max() < 0.1  # what crop 0 discards is the dark half
    assert rod[1].max() > 0.9


def test_integral_map_box_sums() -> None:
    values = np.arange(12, dtype=np.float64).reshape(3, 4)
    m = IntegralMap(values)
    assert m.box_sum(np.array([[0, 0, 1, 1]]))[0] == pytest.approx(values.sum())
    assert m.box_sum(np.array([[0, 0, 0.5, 1 / 3]]))[0] == pytest.approx(values[0, :2].sum())


def _analysis_with_face(face: Box) -> ImageAnalysis:
    subject = np.zeros((32, 48), np.float32)
    return ImageAnalysis((6000, 4000), np.zeros((16, 16, 24), np.float16), subject, [Face(face, 0.95)])


def test_composition_never_cuts_a_face() -> None:
    face = Box(0.42, 0.2, 0.58, 0.45)
    a = _analysis_with_face(face)
    for ratio in ("free", "1:1", "4:5", "16:9", "9:16"):
        s = suggest(a, CompositionScorer(), parse_ratio(ratio), top_k=3)
        for crop in s.crops:
            inside = contains_fraction(crop, face)
            assert inside > 0.98 or inside < 0.02, (ratio, crop, inside)
        assert contains_fraction(s.crop, face) > 0.98


def test_candidate_stats_keep_and_edge() -> None:
    subject = np.zeros((32, 48), np.float32)
    subject[8:24, 12:36] = 1.0
    a = ImageAnalysis((4800, 3200), np.zeros((16, 16, 24), np.float16), subject, [])
    boxes = np.array([[0, 0, 1, 1], [0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 0.5, 1.0]], np.float32)
    stats = candidate_stats(a, boxes)
    keep, edge = stats[:, 0], stats[:, 1]
    assert keep[0] == pytest.approx(1.0) and keep[1] == pytest.approx(1.0, abs=0.02)
    assert keep[2] == pytest.approx(0.5, abs=0.05)
    assert edge[0] == 0  # frame borders cut nothing
    assert edge[2] == pytest.approx(0.5, abs=0.05)  # the right edge runs through the subject for half its length


@pytest.mark.parametrize("shape", [(224, 320), (224, 224), (448, 96), (160, 448), (64, 448)])
def test_fast_backbone_matches_eager(shape: tuple[int, int]) -> None:
    from pic_plugin.analysis.backbone import load_fast_backbone

    x = torch.randn(1, 3, *shape)
    with torch.inference_mode():
        fast = load_fast_backbone()(x)
        eager = load_backbone()(x)
    for a, b in zip(fast, eager, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3)
