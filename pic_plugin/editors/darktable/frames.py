"""darktable's crop frame vs pic's displayed frame (FORMATS.md 1.6.3), and the legacy ``clipping`` module's geometry."""

from __future__ import annotations

import math

from pic_plugin.core.errors import SidecarError
from pic_plugin.core.geometry import FULL_FRAME, Box
from pic_plugin.core.orientation import displayed_to_stored, normalize_orientation, stored_to_displayed
from pic_plugin.editors.darktable.history import HistoryEntry
from pic_plugin.editors.darktable.params import (
    BITS_TO_EXIF,
    EXIF_TO_BITS,
    ClippingParams,
    decode_flip,
    merge_flip_v1,
)

# --- frames ----------------------------------------------------------------------------------------------------


def frame_orientation(flip: HistoryEntry | None, exif_orientation: int) -> tuple[int, int | None]:
    """(EXIF number of darktable's crop frame relative to the stored raster, effective flip bits or None).

    No flip entry: the module's default (enabled, -1 = EXIF). Disabled: no rotation at all.
    """
    exif = normalize_orientation(exif_orientation)
    if flip is None:
        return exif, None
    if not flip.enabled:
        return 1, None
    if flip.params is None or flip.modversion is None:
        return exif, -1
    bits = decode_flip(flip.modversion, flip.params)
    if bits < 0:
        return exif, bits
    if flip.modversion == 1:
        bits = merge_flip_v1(EXIF_TO_BITS[exif], bits & 7)
    return BITS_TO_EXIF[bits & 7], bits


def frame_to_displayed(box: Box, frame_o: int, exif_o: int) -> Box:
    """darktable frame (after its flip) -> pic's displayed frame (after the EXIF orientation), by content."""
    return stored_to_displayed(displayed_to_stored(box, frame_o), exif_o)


def displayed_to_frame(box: Box, frame_o: int, exif_o: int) -> Box:
    return stored_to_displayed(displayed_to_stored(box, exif_o), frame_o)


def frame_size(size: tuple[int, int] | None, frame_o: int, exif_o: int) -> tuple[float, float] | None:
    """Pixel size of darktable's crop frame from pic's displayed size."""
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    w, h = size
    stored = (h, w) if normalize_orientation(exif_o) >= 5 else (w, h)
    return (stored[1], stored[0]) if frame_o >= 5 else stored


def _rot(x: float, y: float, angle: float) -> tuple[float, float]:
    """darktable's rotation (clipping ``m`` and lightroom.c ``rotate_xy``): (x cos + y sin, -x sin + y cos)."""
    c, s = math.cos(angle), math.sin(angle)
    return (x * c + y * s, -x * s + y * c)


def clipping_content(cp: ClippingParams, sub: Box = FULL_FRAME,
                     size: tuple[float, float] | None = None) -> tuple[Box, bool]:
    """Region of clipping's input (normalized) shown by ``sub`` (normalized box of clipping's output).

    Returns (box, exact). With angle 0 and no keystone the region is exact; otherwise it is the axis-aligned
    bound of the rotated region (keystone ignored), following clipping.c's ``modify_roi_out`` and ``process``.
    """
    w, h = size if size is not None else (1.5, 1.0)
    a = math.radians(cp.angle)
    box = cp.box
    if cp.k_apply == 0 and cp.crop_auto == 1:
        # "old solution": the box is relative to the largest upright rectangle inside the rotated image
        scale, flip = -1.0, 0
        for f in (0, 1):
            rw, rh = (h, w) if f else (w, h)
            s = 1.0
            for px, py in ((-w / 2, -h / 2), (w / 2, -h / 2), (-w / 2, h / 2), (w / 2, h / 2)):
                o = _rot(px, py, a)  # clipping.c: transform() with rt
                for k, bound in ((0, rw / 2), (1, rh / 2)):
                    if abs(o[k]) > 0.001:
                        s = min(s, bound / abs(o[k]))
            if s >= scale:
                scale, flip = s, f
        fw, fh = (h, w) if flip else (w, h)
        x0, x1 = (box.left - 0.5) * scale * fw, (box.right - 0.5) * scale * fw
        y0, y1 = (box.top - 0.5) * scale * fh, (box.bottom - 0.5) * scale * fh
    else:
        xs, ys = [], []
        for px, py in ((-w / 2, -h / 2), (w / 2, -h / 2), (-w / 2, h / 2), (w / 2, h / 2)):
            o = _rot(px, py, a)
            xs.append(o[0])
            ys.append(o[1])
        bx, by, bw, bh = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
        x0, x1 = bx + box.left * bw, bx + box.right * bw
        y0, y1 = by + box.top * bh, by + box.bottom * bh
    # sub-box of the output region, then back into the input (mirror first: it is part of clipping's matrix)
    sx0, sx1 = x0 + sub.left * (x1 - x0), x0 + sub.right * (x1 - x0)
    sy0, sy1 = y0 + sub.top * (y1 - y0), y0 + sub.bottom * (y1 - y0)
    mx, my = cp.mirror
    pts = []
    for qx, qy in ((sx0, sy0), (sx1, sy0), (sx0, sy1), (sx1, sy1)):
        ix, iy = _rot(-qx if mx else qx, -qy if my else qy, a)
        pts.append((ix / w + 0.5, iy / h + 0.5))
    xs_n = [p[0] for p in pts]
    ys_n = [p[1] for p in pts]
    out = Box(min(xs_n), min(ys_n), max(xs_n), max(ys_n)).clamped()
    return out, cp.angle == 0.0 and not cp.keystone


def clipping_output_box(cp: ClippingParams, content: Box) -> Box:
    """Inverse of ``clipping_content`` for angle 0 without keystone: a content region -> box in clipping's output."""
    box = cp.box
    mx, my = cp.mirror
    left, right = (1 - content.right, 1 - content.left) if mx else (content.left, content.right)
    top, bottom = (1 - content.bottom, 1 - content.top) if my else (content.top, content.bottom)
    bw, bh = box.right - box.left, box.bottom - box.top
    if bw <= 0 or bh <= 0:
        raise SidecarError("the clipping entry before the crop has an empty box; pic cannot place a crop after it")
    return Box((left - box.left) / bw, (top - box.top) / bh, (right - box.left) / bw, (bottom - box.top) / bh).clamped()


