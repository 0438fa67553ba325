"""Metrics, baselines and splits of the evaluation harness."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_photo
from pic_plugin.core.geometry import FREE, ORIGINAL, Box, parse_ratio
from pic_plugin.imaging.faces import Face
from pic_plugin.research import evaluation as ev


def test_tally_metrics() -> None:
    t = ev.Tally()
    ref = Box(0.1, 0.1, 0.9, 0.9)
    subject = Box(0.4, 0.4, 0.6, 0.6)
    face = Face(Box(0.45, 0.45, 0.55, 0.55), 0.9)
    t.add(ref, ref, subject, [face])  # perfect
    t.add(Box(0.5, 0.1, 0.9, 0.9), ref, subject, [face])  # half: cuts the subject and the face
    s = t.summary()
    assert s["n"] == 2
    assert s["iou"] == pytest.approx((1 + 0.5) / 2)
    assert s["hit"] == pytest.approx(0.5)
    assert s["retention"] == pytest.approx(0.5)
    assert (s["face_cuts"], s["face_photos"]) == (1, 2)
    assert s["bde"] == pytest.approx((0 + 0.4 / 4) / 2)


def test_cuts_face_only_when_partly_inside() -> None:
    face = Face(Box(0.4, 0.4, 0.5, 0.5), 0.9)
    assert not ev.cuts_face(Box(0.0, 0.0, 1.0, 1.0), [face])
    assert not ev.cuts_face(Box(0.6, 0.0, 1.0, 1.0), [face])
    assert ev.cuts_face(Box(0.45, 0.0, 1.0, 1.0), [face])


@pytest.mark.parametrize("ratio", ["1:1", "4:5", "16:9", "original"])
def test_centre_crop_has_the_ratio(ratio: str) -> None:
    size = (640, 427)
    r = parse_ratio(ratio)
    box = ev.centre_crop(size, r)
    assert box.is_valid()
    assert box.pixel_aspect(size) == pytest.approx(r.value_for(size), rel=1e-6)
    assert box.center == pytest.approx((0.5, 0.5))
    assert max(box.width, box.height) == pytest.approx(1.0)


def test_nearest_ratio_and_user_mean_geometry() -> None:
    size = (600, 400)
    square = ev.centre_crop(size, parse_ratio("1:1"))
    assert ev.nearest_ratio(square, size) == "1:1"
    assert ev.nearest_ratio(Box(0, 0, 1, 1), size) == "original"
    assert ev.nearest_ratio(Box(0, 0, 0.9, 0.31), size) == "free"
    support = [(Box(0.1, 0.1, 0.5, 0.7), size), (Box(0.2, 0.2, 0.6, 0.8), size)]  # both 1:1 in pixels
    um = ev.user_mean_geometry(support, size, None)
    assert um.pixel_aspect(size) == pytest.approx(1.0, rel=1e-6)
    assert um.center == pytest.approx((0.35, 0.45), abs=1e-6)
    assert um.area == pytest.approx(0.4 * 0.6, rel=1e-6)
    # A ratio given wins over the user's habit; free keeps the mean box as it is.
    assert ev.user_mean_geometry(support, size, parse_ratio("16:9")).pixel_aspect(size) == pytest.approx(16 / 9)
    assert ev.user_mean_geometry(support, size, FREE) == pytest.approx(Box(0.15, 0.15, 0.55, 0.75))
    assert ev.user_mean_geometry([], size, ORIGINAL) == Box(0, 0, 1, 1)


def test_gaic_metrics_and_spearman() -> None:
    mos = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    perfect = ev.gaic_metrics(mos, mos)
    assert perfect["acc1/5"] == 1.0 and perfect["acc4/5"] == 1.0 and perfect["srcc"] == pytest.approx(1.0)
    reversed_ = ev.gaic_metrics(-mos, mos)
    assert reversed_["acc1/5"] == 0.0 and reversed_["srcc"] == pytest.approx(-1.0)
    assert ev.spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 2, 3])) == pytest.approx(1.0)
    assert list(ev.rank_average(np.array([3, 1, 3]))) == [2.5, 1.0, 2.5]


def test_heldout_split_is_fixed_and_disjoint() -> None:
    crops = [ev.UserCrop(f"key{i}", None, Box(0, 0, 1, 1)) for i in range(200)]  # type: ignore[arg-type]
    a_train, a_held = ev.heldout_split(crops)
    b_train, b_held = ev.heldout_split(list(reversed(crops)))
    assert {c.key for c in a_held} == {c.key for c in b_held}
    assert not {c.key for c in a_train} & {c.key for c in a_held}
    assert 0.2 < len(a_held) / 200 < 0.4


@pytest.mark.parametrize("method", ["smartcrop", "libvips"])
def test_peer_baselines_return_boxes_of_the_ratio(tmp_path, method: str) -> None:  # type: ignore[no-untyped-def]
    module = "smartcrop" if method == "smartcrop" else "pyvips"
    pytest.importorskip(module)
    path = tmp_path / "photo.jpg"
    make_photo(480, 320, subject=(0.8, 0.5)).save(path, quality=92)
    fn = ev.smartcrop_crop if method == "smartcrop" else ev.libvips_attention_crop
    box = fn(path, parse_ratio("1:1"))
    assert box.is_valid()
    assert box.pixel_aspect((480, 320)) == pytest.approx(1.0, rel=0.06)
    # The subject blob sits on the right: an attention crop moves that way.
    assert box.center[0] > 0.55


def test_user_evaluation_holds_out_only_crops_the_user_made() -> None:
    """pic's own suggestions left in place (weight 0.3) train but are never the yardstick."""
    from pic_plugin.analysis.features import ImageAnalysis
    from pic_plugin.model.network import load_prior

    net, _ = load_prior()
    analysis = ImageAnalysis((600, 400), np.zeros((16, 12, 18), np.float16), np.zeros((12, 18), np.float32), [])
    own = [ev.UserCrop(f"own{i}", analysis, Box(0.05, 0.1, 0.55, 0.85), 1.0) for i in range(20)]
    pics = [ev.UserCrop(f"pic{i}", analysis, Box(0.0, 0.0, 1.0, 1.0), 0.3) for i in range(20)]
    report = ev.evaluate_user(net, own + pics, heldout_share=0.3)
    _, held = ev.heldout_split(own, 0.3)
    assert report["heldout_crops"] == len(held) > 0
    assert report["train_crops"] == 40 - len(held)
    with pytest.raises(ValueError, match="crops you made"):
        ev.evaluate_user(net, pics, heldout_share=0.3)
