"""Candidate crops: GAIC's grid, ratio-specific windows and a fallback that is never empty.

All boxes are normalized (left, top, right, bottom) in the displayed frame. Ratios are *pixel* aspect ratios,
so the image size in pixels is needed to place them.

- GAIC grid (Zeng et al. 2019): 12 x 12 bins, the top-left corner in the first 4 x 4 bins and the
  bottom-right corner in the last 4 x 4, area >= 50% and aspect in (0.5, 2).
- Ratio windows: for each requested ratio, boxes of that exact aspect at many scales and positions (down to
  small crops, which tight-framing photographers make around a small subject).
- Fallback: the largest box of each ratio, and the full frame when free, so panoramas (where GAIC's aspect
  filter leaves nothing) and tiny images always get candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pic_plugin.core.geometry import COMMON_RATIOS, Box, Ratio, largest_box, parse_ratio

GRID_BINS = 12
GRID_CORNER_BINS = 4
GRID_MIN_AREA = 0.5
GRID_ASPECT = (0.5, 2.0)
#: Window scales (side length relative to the largest box of the ratio).
SCALES_DENSE = (1.0, 0.93, 0.86, 0.8, 0.74, 0.68, 0.62, 0.56, 0.5, 0.45, 0.4, 0.35, 0.3, 0.26, 0.22)
SCALES_COARSE = (1.0, 0.88, 0.77, 0.67, 0.58, 0.5, 0.42, 0.35, 0.28)
#: Step between window positions, as a fraction of the frame.
POSITION_STEP_DENSE = 0.04
POSITION_STEP_COARSE = 0.1
MAX_POSITIONS = 15
#: Crops smaller than this many pixels on a side are not offered.
MIN_SIDE_PX = 16


@dataclass
class Candidates:
    boxes: np.ndarray  # N x 4 float32 normalized
    ratios: list[str]  # the ratio each box was made for ("free" for grid / full-frame boxes)

    def __len__(self) -> int:
        return len(self.boxes)

    def box(self, i: int) -> Box:
        return Box(*(float(v) for v in self.boxes[i]))


def gaic_grid(image_size: tuple[int, int]) -> list[Box]:
    w, h = image_size
    edges = [i / GRID_BINS for i in range(GRID_BINS + 1)]
    lows = edges[:GRID_CORNER_BINS]
    highs = edges[GRID_BINS - GRID_CORNER_BINS + 1 :]
    out = []
    for x0 in lows:
        for x1 in highs:
            for y0 in lows:
                for y1 in highs:
                    b = Box(x0, y0, x1, y1)
                    aspect = b.pixel_aspect((w, h))
                    if b.area >= GRID_MIN_AREA and GRID_ASPECT[0] < aspect < GRID_ASPECT[1]:
                        out.append(b)
    return out


def ratio_windows(aspect: float, image_size: tuple[int, int], scales: tuple[float, ...], step: float) -> np.ndarray:
    """N x 4 boxes of pixel ``aspect`` at each scale, slid over the frame on a grid of ``step``."""
    w, h = image_size
    max_w, max_h = largest_box(aspect, image_size)
    parts = []
    for s in scales:
        bw, bh = max_w * s, max_h * s
        if bw * w < MIN_SIDE_PX or bh * h < MIN_SIDE_PX:
            continue
        xs, ys = np.meshgrid(_positions(1.0 - bw, step), _positions(1.0 - bh, step))
        x0, y0 = xs.ravel(), ys.ravel()
        parts.append(np.stack([x0, y0, np.minimum(1.0, x0 + bw), np.minimum(1.0, y0 + bh)], axis=1))
    return np.concatenate(parts) if parts else np.zeros((0, 4))


def _positions(slack: float, step: float) -> np.ndarray:
    if slack <= 1e-9:
        return np.zeros(1)
    n = min(MAX_POSITIONS, max(2, math.ceil(slack / step) + 1))
    return np.linspace(0.0, slack, n)


def generate(image_size: tuple[int, int], ratio: Ratio, dense: bool = True) -> Candidates:
    """Candidates for one image. ``ratio`` free -> grid + windows of every common ratio and the original.

    Photos of one camera share their size, so the (read-only) result is cached per size and ratio.
    """
    return _generate(tuple(image_size), ratio, dense)  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def _generate(image_size: tuple[int, int], ratio: Ratio, dense: bool) -> Candidates:
    boxes: list[np.ndarray] = []
    names: list[str] = []

    def add(items: list[Box] | np.ndarray, name: str) -> None:
        arr = np.asarray(items, dtype=np.float64).reshape(-1, 4)
        boxes.append(arr)
        names.extend([name] * len(arr))

    if ratio.is_free:
        add(gaic_grid(image_size), "free")
        add([Box(0.0, 0.0, 1.0, 1.0)], "free")
        for r in ("original", *COMMON_RATIOS):
            rr = parse_ratio(r)
            aspect = rr.value_for(image_size)
            assert aspect is not None
            add(ratio_windows(aspect, image_size, SCALES_COARSE, POSITION_STEP_COARSE), rr.name)
    else:
        aspect = ratio.value_for(image_size)
        assert aspect is not None
        scales, step = (SCALES_DENSE, POSITION_STEP_DENSE) if dense else (SCALES_COARSE, POSITION_STEP_COARSE)
        add(ratio_windows(aspect, image_size, scales, step), ratio.name)
        if not names:  # tiny image: the largest box of the ratio, whatever its size
            bw, bh = largest_box(aspect, image_size)
            add([Box((1 - bw) / 2, (1 - bh) / 2, (1 + bw) / 2, (1 + bh) / 2)], ratio.name)
    arr = np.concatenate(boxes).astype(np.float32)
    arr.flags.writeable = False  # shared between calls through the cache
    return Candidates(arr, names)


def jitter(box: Box, image_size: tuple[int, int], aspect: float | None, step: float = 0.015) -> list[Box]:
    """Neighbours of ``box`` (shifted and scaled a little, same aspect if given) for local refinement."""
    w, h = image_size
    out = []
    cx, cy = box.center
    for ds in (0.96, 1.0, 1.04):
        bw, bh = box.width * ds, box.height * ds
        if aspect is not None:
            bh = bw * w / (aspect * h)
        if bw > 1.0 or bh > 1.0:
            scale = min(1.0 / bw, 1.0 / bh)
            bw, bh = bw * scale, bh * scale
        for dx in (-step, 0.0, step):
            for dy in (-step, 0.0, step):
                x0 = min(max(cx + dx - bw / 2, 0.0), 1.0 - bw)
                y0 = min(max(cy + dy - bh / 2, 0.0), 1.0 - bh)
                out.append(Box(x0, y0, x0 + bw, y0 + bh))
    return out
