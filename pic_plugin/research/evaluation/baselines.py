"""Baselines: centre crop of the requested ratio; smartcrop.py and libvips' attention crop (``thumbnail --smartcrop
attention``), both optional ``bench`` extras imported only here; the user's mean geometry (their most used ratio +
the average of their crop boxes)."""


from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pic_plugin.core.geometry import (
    COMMON_RATIOS,
    FREE,
    ORIGINAL,
    Box,
    Ratio,
    largest_box,
    parse_ratio,
)
from pic_plugin.imaging.decode import decode

BASELINES = ("centre", "smartcrop", "libvips", "user-mean")



# --- baselines ------------------------------------------------------------------------------------------------


def _aspect(size: tuple[int, int], ratio: Ratio) -> float:
    value = ratio.value_for(size)
    return value if value is not None else size[0] / size[1]


def centre_crop(size: tuple[int, int], ratio: Ratio) -> Box:
    """The largest box of the ratio, centred (free -> the full frame)."""
    bw, bh = largest_box(_aspect(size, ratio), size)
    return Box((1 - bw) / 2, (1 - bh) / 2, (1 + bw) / 2, (1 + bh) / 2)


def smartcrop_crop(path: Path, ratio: Ratio, size: tuple[int, int] | None = None) -> Box:
    """smartcrop.py's crop of the ratio (its default search: 90-100% of the largest box)."""
    import smartcrop  # bench extra: only the evaluation uses it
    from PIL import Image

    decoded = decode(path)
    img = Image.fromarray(decoded.pixels)
    w, h = img.size
    bw, bh = largest_box(_aspect(decoded.size, ratio), decoded.size)
    tw, th = max(1, round(bw * w)), max(1, round(bh * h))
    top = smartcrop.SmartCrop().crop(img, tw, th)["top_crop"]
    return Box(top["x"] / w, top["y"] / h, (top["x"] + top["width"]) / w, (top["y"] + top["height"]) / h).clamped()


def libvips_attention_crop(path: Path, ratio: Ratio, size: tuple[int, int] | None = None) -> Box:
    """libvips' attention crop (what ``vips thumbnail --smartcrop attention`` keeps) of the largest box of the ratio.

    libvips centres the crop on the point of highest attention and clamps it to the image.
    """
    import pyvips  # bench extra

    decoded = decode(path)
    h, w = decoded.pixels.shape[:2]
    img = pyvips.Image.new_from_memory(np.ascontiguousarray(decoded.pixels).tobytes(), w, h, 3, "uchar")
    bw, bh = largest_box(_aspect(decoded.size, ratio), decoded.size)
    tw, th = max(1, min(w, round(bw * w))), max(1, min(h, round(bh * h)))
    _, opts = img.smartcrop(tw, th, interesting="attention", attention_x=True, attention_y=True)
    left = min(max(opts["attention_x"] - tw // 2, 0), w - tw)
    top = min(max(opts["attention_y"] - th // 2, 0), h - th)
    return Box(left / w, top / h, (left + tw) / w, (top + th) / h)


_RATIO_NAMES = ("original", *COMMON_RATIOS)


def nearest_ratio(box: Box, size: tuple[int, int], tolerance: float = 0.04) -> str:
    """The common ratio (or 'original') a crop was made in, or 'free' when none is within ``tolerance``."""
    la = np.log(max(box.pixel_aspect(size), 1e-6))
    best, dist = "free", tolerance
    for name in _RATIO_NAMES:
        d = abs(la - np.log(_aspect(size, parse_ratio(name))))
        if d < dist - 1e-9:
            best, dist = name, d
    return best


def user_mean_geometry(
    support: Sequence[tuple[Box, tuple[int, int]]], size: tuple[int, int], ratio: Ratio | None
) -> Box:
    """Baseline: the user's average crop box, reshaped to ``ratio`` (or to their most used ratio when None)."""
    if not support:
        return centre_crop(size, ratio or ORIGINAL)
    boxes = np.asarray([b for b, _ in support], dtype=float)
    mean = boxes.mean(axis=0)
    if ratio is None:
        names = Counter(nearest_ratio(b, s) for b, s in support)
        name = names.most_common(1)[0][0]
        ratio = FREE if name == "free" else parse_ratio(name)
    if ratio.is_free:
        return Box(*map(float, mean))
    aspect = _aspect(size, ratio)
    area = max((mean[2] - mean[0]) * (mean[3] - mean[1]), 1e-4)
    w_px, h_px = size
    bw = np.sqrt(area * aspect * h_px / w_px)  # normalized width with bw * W / (bh * H) = aspect, bw * bh = area
    bh = area / bw
    max_w, max_h = largest_box(aspect, size)
    scale = min(1.0, max_w / bw, max_h / bh)
    bw, bh = bw * scale, bh * scale
    cx = min(max((mean[0] + mean[2]) / 2, bw / 2), 1 - bw / 2)
    cy = min(max((mean[1] + mean[3]) / 2, bh / 2), 1 - bh / 2)
    return Box(cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2).clamped()


class BaselineCache:
    """smartcrop and libvips results per (photo, ratio): the protocol asks for the same ones for many users."""

    def __init__(self) -> None:
        self.crops: dict[tuple[str, str, str], Box] = {}
        self.seconds: dict[str, float] = {"smartcrop": 0.0, "libvips": 0.0}
        self.calls: dict[str, int] = {"smartcrop": 0, "libvips": 0}

    def get(self, method: str, path: Path, size: tuple[int, int], ratio: Ratio) -> Box:
        key = (method, str(path), ratio.name)
        if key not in self.crops:
            t0 = time.perf_counter()
            fn = smartcrop_crop if method == "smartcrop" else libvips_attention_crop
            self.crops[key] = fn(path, ratio, size)
            self.seconds[method] += time.perf_counter() - t0
            self.calls[method] += 1
        return self.crops[key]


def baselines_available() -> dict[str, bool]:
    out = {}
    for name, module in (("smartcrop", "smartcrop"), ("libvips", "pyvips")):
        try:
            __import__(module)
            out[name] = True
        except (ImportError, OSError):
            out[name] = False
    return out


