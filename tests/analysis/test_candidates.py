import numpy as np
import pytest

from pic_plugin.analysis.candidates import gaic_grid, generate, jitter
from pic_plugin.core.geometry import Box, parse_ratio


def test_gaic_grid_follows_the_paper_rules() -> None:
    boxes = gaic_grid((1024, 682))
    assert 50 < len(boxes) <= 256
    for b in boxes:
        assert b.area >= 0.5 - 1e-9
        assert 0.5 < b.pixel_aspect((1024, 682)) < 2
        assert b.left < 4 / 12 + 1e-9 and b.right > 8 / 12 - 1e-9


@pytest.mark.parametrize("ratio", ["1:1", "4:5", "5:4", "3:2", "2:3", "16:9", "9:16", "original", "7:3"])
@pytest.mark.parametrize("size", [(6000, 4000), (4000, 6000), (1000, 1000), (10000, 3000)])
def test_ratio_windows_have_the_exact_ratio(ratio: str, size: tuple[int, int]) -> None:
    r = parse_ratio(ratio)
    c = generate(size, r)
    assert len(c) > 0
    want = r.value_for(size)
    for b in c.boxes:
        box = Box(*map(float, b))
        assert box.is_valid()
        assert box.pixel_aspect(size) == pytest.approx(want, rel=1e-3)


@pytest.mark.parametrize("size", [(10000, 3000), (3000, 10000), (12, 9), (1, 1), (64, 4000)])
def test_never_zero_candidates(size: tuple[int, int]) -> None:
    """Panoramas (where GAIC's aspect filter leaves nothing) and tiny images still get candidates."""
    for ratio in ("free", "1:1", "16:9", "original"):
        c = generate(size, parse_ratio(ratio))
        assert len(c) >= 1
        assert np.all(c.boxes[:, 2] > c.boxes[:, 0]) and np.all(c.boxes[:, 3] > c.boxes[:, 1])


def test_free_includes_full_frame_and_small_tight_crops() -> None:
    c = generate((6000, 4000), parse_ratio("free"))
    areas = (c.boxes[:, 2] - c.boxes[:, 0]) * (c.boxes[:, 3] - c.boxes[:, 1])
    assert areas.max() == pytest.approx(1.0)
    assert areas.min() < 0.1


def test_jitter_keeps_aspect_and_frame() -> None:
    size = (6000, 4000)
    b = Box(0.1, 0.1, 0.5, 0.7)
    for j in jitter(b, size, aspect=b.pixel_aspect(size)):
        assert j.is_valid()
        assert j.pixel_aspect(size) == pytest.approx(b.pixel_aspect(size), rel=1e-6)
