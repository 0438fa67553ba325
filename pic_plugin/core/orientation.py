"""EXIF orientation: reading it, and mapping boxes between the stored raster and the displayed frame.

The maps are FORMATS.md section 5.1 (checked against darktable's flip logic). ``(u, v)`` is a normalized
point in the stored raster, ``(u', v')`` the same point as the user sees the photo.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from pic_plugin.core.geometry import Box

log = logging.getLogger(__name__)
# exifread logs every file without EXIF at WARNING level; pic treats a missing tag as orientation 1.
logging.getLogger("exifread").setLevel(logging.ERROR)

Point = tuple[float, float]

_TO_DISPLAYED: dict[int, Callable[[float, float], Point]] = {
    1: lambda u, v: (u, v),
    2: lambda u, v: (1 - u, v),
    3: lambda u, v: (1 - u, 1 - v),
    4: lambda u, v: (u, 1 - v),
    5: lambda u, v: (v, u),
    6: lambda u, v: (1 - v, u),
    7: lambda u, v: (1 - v, 1 - u),
    8: lambda u, v: (v, 1 - u),
}

_TO_STORED: dict[int, Callable[[float, float], Point]] = {
    1: lambda u, v: (u, v),
    2: lambda u, v: (1 - u, v),
    3: lambda u, v: (1 - u, 1 - v),
    4: lambda u, v: (u, 1 - v),
    5: lambda u, v: (v, u),
    6: lambda u, v: (v, 1 - u),
    7: lambda u, v: (1 - v, 1 - u),
    8: lambda u, v: (1 - v, u),
}


def normalize_orientation(value: object) -> int:
    """An EXIF orientation 1-8; anything else (missing, 0, garbage) counts as 1 (normal)."""
    try:
        o = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 1
    return o if 1 <= o <= 8 else 1


def swaps_axes(orientation: int) -> bool:
    """Orientations 5-8 turn the image a quarter, so width and height swap."""
    return normalize_orientation(orientation) >= 5


def displayed_size(stored_size: tuple[int, int], orientation: int) -> tuple[int, int]:
    w, h = stored_size
    return (h, w) if swaps_axes(orientation) else (w, h)


def _map_box(box: Box, fn: Callable[[float, float], Point]) -> Box:
    (x0, y0), (x1, y1) = fn(box.left, box.top), fn(box.right, box.bottom)
    return Box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def stored_to_displayed(box: Box, orientation: int) -> Box:
    return _map_box(box, _TO_DISPLAYED[normalize_orientation(orientation)])


def displayed_to_stored(box: Box, orientation: int) -> Box:
    return _map_box(box, _TO_STORED[normalize_orientation(orientation)])


def read_exif_orientation(source: str | Path | BinaryIO) -> int:
    """EXIF orientation of an image file (JPEG, TIFF, most RAWs, HEIF, PNG eXIf) via exifread; 1 if absent."""
    import exifread  # imported lazily: it is only needed when a file is actually decoded

    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as fh:
                tags = exifread.process_file(fh, details=False, stop_tag="Orientation", extract_thumbnail=False)
        else:
            tags = exifread.process_file(source, details=False, stop_tag="Orientation", extract_thumbnail=False)
    except Exception as exc:  # exifread raises many kinds of errors on odd files; orientation is optional
        log.debug("no EXIF orientation in %s: %s", source, exc)
        return 1
    tag = tags.get("Image Orientation")
    if tag is None:
        return 1
    values = getattr(tag, "values", None)
    if isinstance(values, list) and values:
        return normalize_orientation(values[0])
    return normalize_orientation(values)


#: LibRaw's ``sizes.flip`` (dcraw bits: 1 mirror x, 2 mirror y, 4 swap axes) as the EXIF orientation it stands for.
LIBRAW_FLIP_TO_EXIF = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
