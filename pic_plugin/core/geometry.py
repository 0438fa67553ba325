"""Crop boxes, aspect ratios and the metrics that compare crops.

Inside pic a crop is ``Box(left, top, right, bottom)`` normalized to [0, 1] in the *displayed* frame
(EXIF orientation applied). Pixel sizes matter only where an aspect ratio must be exact, so the functions
that deal with ratios take the displayed image size in pixels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple


class Box(NamedTuple):
    """A rectangle as normalized edges in the displayed frame (right/bottom are edges, not sizes)."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2, (self.top + self.bottom) / 2)

    def is_valid(self) -> bool:
        values = (self.left, self.top, self.right, self.bottom)
        return (
            all(math.isfinite(v) for v in values)
            and 0.0 <= self.left < self.right <= 1.0
            and 0.0 <= self.top < self.bottom <= 1.0
        )

    def clamped(self) -> Box:
        return Box(
            min(max(self.left, 0.0), 1.0),
            min(max(self.top, 0.0), 1.0),
            min(max(self.right, 0.0), 1.0),
            min(max(self.bottom, 0.0), 1.0),
        )

    def pixel_aspect(self, size: tuple[int, int]) -> float:
        """Width / height of the box in pixels of an image of ``size`` (W, H)."""
        return (self.width * size[0]) / max(self.height * size[1], 1e-12)

    def to_pixels(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Integer pixel edges (x0, y0, x1, y1) in an image of ``size`` (W, H), at least 1 px wide."""
        w, h = size
        x0 = min(max(round(self.left * w), 0), w - 1)
        y0 = min(max(round(self.top * h), 0), h - 1)
        x1 = min(max(round(self.right * w), x0 + 1), w)
        y1 = min(max(round(self.bottom * h), y0 + 1), h)
        return x0, y0, x1, y1

    @classmethod
    def from_pixels(cls, x0: float, y0: float, x1: float, y1: float, size: tuple[int, int]) -> Box:
        w, h = size
        return cls(x0 / w, y0 / h, x1 / w, y1 / h)

    def rounded(self, digits: int = 6) -> Box:
        return Box(*(round(v, digits) for v in self))

    def as_list(self, digits: int = 6) -> list[float]:
        return [round(v, digits) for v in self]


FULL_FRAME = Box(0.0, 0.0, 1.0, 1.0)


def is_full_frame(box: Box | tuple[float, ...], eps: float) -> bool:
    """Every edge of ``box`` within ``eps`` of the frame's (each format stores edges at its own precision)."""
    return all(abs(a - b) <= eps for a, b in zip(box, FULL_FRAME, strict=True))


def intersection(a: Box, b: Box) -> float:
    w = min(a.right, b.right) - max(a.left, b.left)
    h = min(a.bottom, b.bottom) - max(a.top, b.top)
    return w * h if w > 0 and h > 0 else 0.0


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def bde(a: Box, b: Box) -> float:
    """Boundary displacement error: mean absolute displacement of the four normalized edges."""
    return (abs(a.left - b.left) + abs(a.top - b.top) + abs(a.right - b.right) + abs(a.bottom - b.bottom)) / 4


def contains_fraction(outer: Box, inner: Box) -> float:
    """Share of ``inner``'s area that lies inside ``outer``."""
    return intersection(outer, inner) / inner.area if inner.area > 0 else 1.0


# --- aspect ratios ---------------------------------------------------------------------------------------------

_RATIO_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[:x/]\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Ratio:
    """An aspect-ratio request: ``free`` (None), ``original`` (the image's own) or an exact W:H."""

    name: str
    width: float | None = None
    height: float | None = None
    original: bool = False

    @property
    def is_free(self) -> bool:
        return self.width is None and not self.original

    def value_for(self, image_size: tuple[int, int]) -> float | None:
        """Width / height in pixels this ratio asks for on an image of ``image_size``, or None for free."""
        if self.original:
            return image_size[0] / image_size[1]
        if self.width is None or self.height is None:
            return None
        return self.width / self.height

    def integer_terms(self, image_size: tuple[int, int]) -> tuple[int, int] | None:
        """Smallest integer W:H terms for exact pixel crops (None when free or not a small rational)."""
        value = self.value_for(image_size)
        if value is None:
            return None
        if self.original:
            g = math.gcd(*image_size)
            return image_size[0] // g, image_size[1] // g
        assert self.width is not None and self.height is not None
        frac = Fraction(self.width).limit_denominator(1000) / Fraction(self.height).limit_denominator(1000)
        return frac.numerator, frac.denominator

    def __str__(self) -> str:
        return self.name


FREE = Ratio("free")
ORIGINAL = Ratio("original", original=True)

# The ratios photographers ask for most; candidates cover all of them when no ratio is requested.
COMMON_RATIOS: tuple[str, ...] = ("1:1", "4:5", "5:4", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16")


def parse_ratio(text: str | None) -> Ratio:
    """Parse ``4:5``, ``16x9``, ``1.5``, ``original``, ``free`` (case-insensitive). Raises ValueError."""
    if text is None:
        return FREE
    t = text.strip().lower()
    if t in ("", "free", "any", "none"):
        return FREE
    if t in ("original", "orig", "as-shot", "image"):
        return ORIGINAL
    m = _RATIO_RE.match(t)
    if m:
        w, h = float(m.group(1)), float(m.group(2))
    else:
        try:
            w, h = float(t), 1.0
        except ValueError:
            raise ValueError(f"not an aspect ratio: {text!r} (use W:H such as 4:5, 'original' or 'free')") from None
    if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)) or not (0.05 <= w / h <= 20):
        raise ValueError(f"aspect ratio out of range: {text!r}")
    name = f"{_fmt(w)}:{_fmt(h)}"
    return Ratio(name, w, h)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def largest_box(aspect: float, image_size: tuple[int, int]) -> tuple[float, float]:
    """Normalized (width, height) of the largest box of pixel aspect ``aspect`` that fits the image."""
    w, h = image_size
    if aspect >= w / h:
        return 1.0, (w / aspect) / h
    return (h * aspect) / w, 1.0


def box_with_aspect(center: tuple[float, float], norm_w: float, norm_h: float) -> Box:
    """A box of the given normalized size, shifted (not shrunk) so that it lies inside the frame."""
    cx = min(max(center[0], norm_w / 2), 1 - norm_w / 2)
    cy = min(max(center[1], norm_h / 2), 1 - norm_h / 2)
    return Box(cx - norm_w / 2, cy - norm_h / 2, cx + norm_w / 2, cy + norm_h / 2).clamped()


def exact_pixel_crop(box: Box, image_size: tuple[int, int], ratio: Ratio) -> tuple[int, int, int, int]:
    """Integer pixel crop near ``box`` whose W:H equals the ratio exactly (for exports and exact sidecars).

    The crop keeps the box's centre where it can and about the box's area (never larger than the image),
    and has width = k * rw and height = k * rh for the ratio's smallest integer terms rw:rh.
    """
    terms = ratio.integer_terms(image_size)
    if terms is None:
        return box.to_pixels(image_size)
    rw, rh = terms
    w, h = image_size
    bw, bh = box.width * w, box.height * h
    k = max(1, math.floor(min(math.sqrt(bw * bh / (rw * rh)), w / rw, h / rh)))
    if k * rw > w or k * rh > h:
        # The integer terms are larger than the image: fall back to the closest pixel box.
        return box.to_pixels(image_size)
    cw, ch = k * rw, k * rh
    cx, cy = (box.left + box.right) / 2 * w, (box.top + box.bottom) / 2 * h
    x0 = int(round(min(max(cx - cw / 2, 0), w - cw)))
    y0 = int(round(min(max(cy - ch / 2, 0), h - ch)))
    return x0, y0, x0 + cw, y0 + ch


def snap_to_ratio(box: Box, image_size: tuple[int, int], ratio: Ratio) -> Box:
    """The normalized box of ``exact_pixel_crop`` (identity for free ratios)."""
    if ratio.is_free:
        return box
    return Box.from_pixels(*exact_pixel_crop(box, image_size, ratio), size=image_size)


def mean_box(boxes: Iterable[Box]) -> Box:
    items = list(boxes)
    if not items:
        return FULL_FRAME
    n = len(items)
    return Box(*(sum(b[i] for b in items) / n for i in range(4)))


#: Names a pixel crop is called by when it is within this relative distance of the ratio (a crop rounded to whole
#: pixels is rarely exact).
RATIO_NAME_TOLERANCE = 0.01


def ratio_name(width: float, height: float) -> str:
    """What photographers call a crop of ``width`` x ``height`` pixels: ``4:5``, ``1:1``, ``3:2``, else ``1.41:1``."""
    if width <= 0 or height <= 0:
        return "?"
    value = width / height
    for name in ("1:1", *COMMON_RATIOS, "2:1", "1:2"):
        w, _, h = name.partition(":")
        if abs(value / (float(w) / float(h)) - 1) <= RATIO_NAME_TOLERANCE:
            return name
    return f"{value:.2f}:1" if value >= 1 else f"1:{1 / value:.2f}"


def pixel_words(box: Box | tuple[float, ...], size: tuple[int, int]) -> str:
    """A crop as the pixels it keeps of a photo of ``size``: ``3024 x 3780, 4:5``."""
    x0, y0, x1, y1 = Box(*box).to_pixels(size)
    return f"{x1 - x0} x {y1 - y0}, {ratio_name(x1 - x0, y1 - y0)}"
