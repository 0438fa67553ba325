import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pic_plugin.core.geometry import Box, bde, exact_pixel_crop, iou, parse_ratio, snap_to_ratio
from pic_plugin.core.orientation import displayed_to_stored, stored_to_displayed

unit = st.floats(0, 1, allow_nan=False)


@st.composite
def boxes(draw):  # type: ignore[no-untyped-def]
    x0, x1 = sorted((draw(unit), draw(unit)))
    y0, y1 = sorted((draw(unit), draw(unit)))
    return Box(x0, y0, x1 + 1e-3 if x1 == x0 else x1, y1 + 1e-3 if y1 == y0 else y1)


def test_iou_and_bde_basics() -> None:
    a = Box(0, 0, 0.5, 0.5)
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, Box(0.5, 0.5, 1, 1)) == 0.0
    assert iou(a, Box(0, 0, 1, 0.5)) == pytest.approx(0.5)
    assert bde(a, Box(0.1, 0, 0.5, 0.5)) == pytest.approx(0.025)


@pytest.mark.parametrize("orientation", range(1, 9))
@given(box=boxes())
def test_orientation_maps_round_trip(orientation: int, box: Box) -> None:
    back = displayed_to_stored(stored_to_displayed(box, orientation), orientation)
    assert all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(back, box, strict=True))


def test_rotate_cw_matches_formats_md() -> None:
    # FORMATS.md 5.1: for EXIF 6, stored (L, T, R, B) -> displayed (1-B, L, 1-T, R).
    L, T, R, B = 0.1, 0.2, 0.6, 0.9
    assert stored_to_displayed(Box(L, T, R, B), 6) == pytest.approx(Box(1 - B, L, 1 - T, R))


@pytest.mark.parametrize(
    "text,name", [("4:5", "4:5"), ("16x9", "16:9"), ("1.5", "1.5:1"), ("original", "original"), ("free", "free")]
)
def test_parse_ratio(text: str, name: str) -> None:
    assert parse_ratio(text).name == name


@pytest.mark.parametrize("bad", ["0:1", "abc", "1:100", "-1:2"])
def test_parse_ratio_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_ratio(bad)


@pytest.mark.parametrize("ratio", ["1:1", "4:5", "5:4", "3:2", "2:3", "16:9", "9:16", "original"])
@given(box=boxes())
def test_exact_pixel_crop_has_exact_ratio(ratio: str, box: Box) -> None:
    size = (6000, 4000)
    r = parse_ratio(ratio)
    x0, y0, x1, y1 = exact_pixel_crop(box, size, r)
    rw, rh = r.integer_terms(size)  # type: ignore[misc]
    assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
    assert (x1 - x0) * rh == (y1 - y0) * rw
    snapped = snap_to_ratio(box, size, r)
    assert snapped.is_valid()
