"""Per-candidate feature vectors of the PIC model, from one image's cached features (``ImageAnalysis``).

Two groups, because the two branches of the model need different things:

- ``content`` (objective branch): the reduced CNN map pooled inside the crop on a 3 x 3 grid (RoI) and over
  what the crop throws away (RoD: the whole discarded region and each side strip), as GAIC does, plus the
  explicit composition statistics of ``composition.candidate_stats``.
- ``geometry`` (both branches; the only input of the subjective branch): the crop's shape (log aspect and how
  close it is to each common ratio, as written and turned with the photo), where it sits in the frame, how
  large it is relative to the *predicted* subject and where that subject lands in it, and how the subject map's
  mass spreads over the crop's 3 x 3 cells and the discarded sides. These are what framing habits are made of
  (ratio habit, tightness, placement); the annotated subject is never used here.

Pooling uses summed-area tables (a few corner look-ups per box) instead of ``grid_sample`` + masked averaging,
so thousands of candidates cost milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pic_plugin.analysis.composition import STAT_NAMES, SubjectSummary, candidate_stats, summarize_subject
from pic_plugin.analysis.features import ImageAnalysis

GRID = 3
#: Ratios whose closeness is a feature (pixel W:H); "original" is the photo's own.
RATIO_SET = ((1, 1), (4, 5), (5, 4), (3, 2), (2, 3), (4, 3), (3, 4), (16, 9), (9, 16), (2, 1), (1, 2))
#: Ratios that a photographer may turn with the photo (3:2 on landscape photos, 2:3 on portrait ones).
ORIENTED_SET = ((3, 2), (4, 3), (5, 4), (16, 9), (2, 1))
#: Width of the ratio-closeness bumps in log-aspect units (a 16:9 crop is not a 5:3 crop).
RATIO_SIGMA = 0.04


@dataclass
class PhotoContext:
    """What the features of any box of one image need, computed once per image."""

    size: tuple[int, int]
    analysis: ImageAnalysis
    subject: SubjectSummary
    fmap_table: np.ndarray  # points x C summed-area table of the CNN map (see ``_table``)
    fmap_hw: tuple[int, int]  # the table's resampled grid
    map_hw: tuple[int, int]  # the CNN map's own grid
    subj_table: np.ndarray  # points x 1 summed-area table of the subject mass
    subj_hw: tuple[int, int]


def photo_context(analysis: ImageAnalysis) -> PhotoContext:
    subject = summarize_subject(analysis)
    fmap_table, fmap_hw = _table(analysis.fmap.astype(np.float32))
    subj_table, subj_hw = _table(subject.weights[None].astype(np.float32))
    return PhotoContext(
        analysis.size, analysis, subject, fmap_table, fmap_hw, analysis.fmap.shape[1:], subj_table, subj_hw
    )


#: Summed-area tables are resampled this many times finer than the map and then read at the nearest point:
#: one gather per look-up instead of four plus blending (the table is bilinear between map cells anyway), and
#: means divide by the area of the rounded cells, so they stay exact means of a box within 1/8 map cell.
TABLE_UPSAMPLE = 4


def _table(values: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Point-major summed-area table of a C x h x w map, resampled TABLE_UPSAMPLE times finer."""
    c, h, w = values.shape
    t = np.zeros((h + 1, w + 1, c), dtype=np.float64)
    t[1:, 1:] = values.transpose(1, 2, 0).astype(np.float64).cumsum(0).cumsum(1)
    hu, wu = h * TABLE_UPSAMPLE, w * TABLE_UPSAMPLE
    fy = np.arange(hu + 1) / TABLE_UPSAMPLE
    fx = np.arange(wu + 1) / TABLE_UPSAMPLE
    yi = np.minimum(fy.astype(np.int64), h - 1)
    xi = np.minimum(fx.astype(np.int64), w - 1)
    ay = (fy - yi)[:, None, None]
    ax = (fx - xi)[None, :, None]
    y0, x0 = yi[:, None], xi[None, :]
    up = (t[y0, x0] * (1 - ax) + t[y0, x0 + 1] * ax) * (1 - ay) + (
        t[y0 + 1, x0] * (1 - ax) + t[y0 + 1, x0 + 1] * ax
    ) * ay
    return up.reshape((hu + 1) * (wu + 1), c).astype(np.float32), (hu, wu)


@dataclass
class Pools:
    """Box sums of a map, with the exact (rounded) areas they cover, normalized to the frame."""

    cells: np.ndarray  # N x 9 x C sums over the 3 x 3 cells inside each box
    cell_area: np.ndarray  # N x 9
    sides: np.ndarray  # N x 4 x C sums over the discarded strips left, right, top, bottom of each box
    side_area: np.ndarray  # N x 4
    total: np.ndarray  # C: sum over the frame


def _pools(table: np.ndarray, hw: tuple[int, int], b: np.ndarray) -> Pools:
    """Sums per 3x3 cell inside each box and per discarded side strip, at the nearest table points.

    Areas are those of the rounded cells, so a mean (sum / area) is exact for the box the table can resolve."""
    h, w = hw
    steps = np.arange(GRID + 1, dtype=np.float64) / GRID
    xi = np.clip(np.rint((b[:, 0:1] + (b[:, 2:3] - b[:, 0:1]) * steps) * w), 0, w).astype(np.int64)  # N x 4
    yi = np.clip(np.rint((b[:, 1:2] + (b[:, 3:4] - b[:, 1:2]) * steps) * h), 0, h).astype(np.int64)
    corners = table[yi[:, :, None] * (w + 1) + xi[:, None, :]]  # N x 4 x 4 x C (rows = y)
    cells = corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]
    dx, dy = np.diff(xi, axis=1), np.diff(yi, axis=1)  # N x 3
    cell_area = (dy[:, :, None] * dx[:, None, :]).reshape(len(b), -1) / (w * h)
    n, c = len(b), table.shape[1]
    total = table[-1]
    x0, x1, y0, y1 = xi[:, 0], xi[:, -1], yi[:, 0], yi[:, -1]
    left = table[h * (w + 1) + x0]
    right = total - table[h * (w + 1) + x1]
    top = table[y0 * (w + 1) + w]
    bottom = total - table[y1 * (w + 1) + w]
    sides = np.stack([left, right, top, bottom], axis=1)
    side_area = np.stack([x0 / w, (w - x1) / w, y0 / h, (h - y1) / h], axis=1)
    return Pools(cells.reshape(n, GRID * GRID, c), cell_area, sides, side_area, total)


def content_dim(channels: int) -> int:
    return channels * (GRID * GRID + 5) + len(STAT_NAMES)


def geometry_names() -> list[str]:
    names = ["log_aspect", "photo_log_aspect"]
    names += [f"is_{a}:{b}" for a, b in RATIO_SET] + ["is_original"] + [f"is_{a}:{b}_turned" for a, b in ORIENTED_SET]
    names += ["area", "width", "height", "cx", "cy", "gap_left", "gap_top", "gap_right", "gap_bottom"]
    names += ["log_w_over_subject", "log_h_over_subject", "place_box_x", "place_box_y", "place_mass_x", "place_mass_y"]
    names += ["subject_left", "subject_right", "subject_top", "subject_bottom"]
    names += ["log_room_x", "log_room_y", "log_room"]
    names += ["keep", "edge", "face_cut", "subject_conf"]
    names += [f"mass_cell_{i}" for i in range(GRID * GRID)] + [f"mass_{s}" for s in ("left", "right", "top", "bottom")]
    return names


GEOMETRY_DIM = len(geometry_names())


@dataclass
class CandidateFeatures:
    content: np.ndarray  # N x content_dim float32
    geometry: np.ndarray  # N x GEOMETRY_DIM float32
    stats: np.ndarray  # N x len(STAT_NAMES): composition.candidate_stats (face cuts etc.)


def compute(ctx: PhotoContext, boxes: np.ndarray) -> CandidateFeatures:
    """Features of each normalized box (N x 4) of the image behind ``ctx``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(b)
    w_px, h_px = ctx.size
    bw = np.maximum(b[:, 2] - b[:, 0], 1e-6)
    bh = np.maximum(b[:, 3] - b[:, 1], 1e-6)
    stats = candidate_stats(ctx.analysis, b, ctx.subject)

    # Content: mean CNN feature per inside cell, mean over the discarded region and each discarded side strip.
    fp = _pools(ctx.fmap_table, ctx.fmap_hw, b)
    map_cells = ctx.map_hw[0] * ctx.map_hw[1]  # table sums are in map cells; the areas are frame shares
    roi = fp.cells / (np.maximum(fp.cell_area, 1e-6) * map_cells)[:, :, None].astype(np.float32)
    inside_area = fp.cell_area.sum(axis=1)
    out_area = 1.0 - inside_area
    rod_all = (
        (fp.total[None] - fp.cells.sum(axis=1))
        / (np.maximum(out_area, 1e-3) * map_cells)[:, None].astype(np.float32)
        * (out_area > 2e-3)[:, None]
    )
    rod_sides = (
        fp.sides
        / (np.maximum(fp.side_area, 1e-3) * map_cells)[:, :, None].astype(np.float32)
        * (fp.side_area > 2e-3)[:, :, None]
    )
    content = np.concatenate([roi.reshape(n, -1), rod_all, rod_sides.reshape(n, -1), stats], axis=1).astype(np.float32)

    # Geometry.
    log_aspect = np.log(bw * w_px / (bh * h_px))
    photo_la = math.log(w_px / h_px)
    matches = [_bump(log_aspect - math.log(a / c)) for a, c in RATIO_SET]
    matches.append(_bump(log_aspect - photo_la))
    turned = 1.0 if w_px >= h_px else -1.0
    matches += [_bump(log_aspect - turned * math.log(a / c)) for a, c in ORIENTED_SET]
    sx0, sy0, sx1, sy1 = ctx.subject.box
    sw, sh = max(sx1 - sx0, 1e-3), max(sy1 - sy0, 1e-3)
    scx, scy = (sx0 + sx1) / 2, (sy0 + sy1) / 2
    col = {name: stats[:, i] for i, name in enumerate(STAT_NAMES)}
    # Room around the subject: the margin m such that the subject box scaled by m about its centre just fits
    # the crop on each axis, given where the subject sits in it (how framing is usually described).
    px, py = (scx - b[:, 0]) / bw, (scy - b[:, 1]) / bh
    room_x = bw * 2 * np.minimum(px, 1 - px) / sw
    room_y = bh * 2 * np.minimum(py, 1 - py) / sh
    log_room_x = np.log(np.maximum(room_x, 1e-3))
    log_room_y = np.log(np.maximum(room_y, 1e-3))
    sp = _pools(ctx.subj_table, ctx.subj_hw, b)
    mass = max(float(sp.total[0]), 1e-6)
    geometry = np.column_stack(
        [
            log_aspect,
            np.full(n, photo_la),
            *matches,
            bw * bh,
            bw,
            bh,
            (b[:, 0] + b[:, 2]) / 2,
            (b[:, 1] + b[:, 3]) / 2,
            b[:, 0],
            b[:, 1],
            1 - b[:, 2],
            1 - b[:, 3],
            np.log(bw / sw),
            np.log(bh / sh),
            px,
            py,
            col["place_x"],
            col["place_y"],
            (sx0 - b[:, 0]) / bw,
            (b[:, 2] - sx1) / bw,
            (sy0 - b[:, 1]) / bh,
            (b[:, 3] - sy1) / bh,
            log_room_x,
            log_room_y,
            np.minimum(log_room_x, log_room_y),
            col["keep"],
            col["edge"],
            col["face_cut"],
            col["subject_conf"],
            sp.cells[:, :, 0] / mass,
            sp.sides[:, :, 0] / mass,
        ]
    ).astype(np.float32)
    # Placement and subject-edge terms explode for tiny boxes: keep them in a sane range.
    np.clip(geometry, -8.0, 8.0, out=geometry)
    return CandidateFeatures(content, geometry, stats)


def _bump(d: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * (d / RATIO_SIGMA) ** 2)
