"""Explicit composition features of candidate crops, and the documented composition scorer built on them.

The features (all cheap, from the subject map, the faces and the box):

- ``keep``: share of the subject's mass inside the crop (faces count as subject);
- ``edge``: how much subject the crop's edges cut through (edges on the frame border cut nothing);
- ``face_cut``: score-weighted number of faces the crop cuts (partly inside);
- ``margin``: log of the crop's size relative to the subject's box (how tight the framing is);
- ``place_x``, ``place_y``: where the subject's centre of mass lands inside the crop (0..1);
- ``area``, ``log_aspect``, ``cx``, ``cy``: plain geometry.

The composition scorer (the named baseline ``composition``) adds, in log space: a strong penalty for losing
subject or cutting a face, a penalty for edges through the subject, a preference for moderate framing
around the subject (when there is one), and the geometry prior of real human crops (FLMS + GAICD,
``data/crop_geometry.json``). Every weight is below, with the reason.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np

from pic_plugin.analysis.features import ImageAnalysis, IntegralMap
from pic_plugin.analysis.subject import SubjectSummary, summarize_subject
from pic_plugin.core.paths import DATA_DIR

GEOMETRY_FILE = DATA_DIR / "crop_geometry.json"

STAT_NAMES = (
    "keep",
    "edge",
    "face_cut",
    "margin",
    "place_x",
    "place_y",
    "area",
    "log_aspect",
    "cx",
    "cy",
    "subject_conf",
)


def candidate_stats(analysis: ImageAnalysis, boxes: np.ndarray, subject: SubjectSummary | None = None) -> np.ndarray:
    """N x len(STAT_NAMES) float32 features of each normalized box (see the module docstring)."""
    subject = subject or summarize_subject(analysis)
    weights = subject.weights
    h, w = weights.shape
    integral = IntegralMap(weights)
    total = max(integral.total, 1e-6)
    b = boxes.astype(np.float64)
    n = len(b)
    keep = np.clip(integral.box_sum(b) / total, 0, 1) if integral.total > 1e-6 else np.ones(n)

    edge = _edge_cut(weights, b)

    face_cut = np.zeros(n)
    for face in analysis.faces:
        fb = face.box
        ix = np.clip(np.minimum(b[:, 2], fb.right) - np.maximum(b[:, 0], fb.left), 0, None)
        iy = np.clip(np.minimum(b[:, 3], fb.bottom) - np.maximum(b[:, 1], fb.top), 0, None)
        inside = ix * iy / max(fb.area, 1e-9)
        # A face is cut when it is neither (almost) wholly inside nor wholly outside the crop.
        face_cut += face.score * ((inside > 0.02) & (inside < 0.98))

    img_w, img_h = analysis.size
    sx0, sy0, sx1, sy1 = subject.box
    subj_area = max((sx1 - sx0) * (sy1 - sy0), 1e-4)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    margin = 0.5 * np.log(np.maximum(area, 1e-6) / subj_area)
    bw = np.maximum(b[:, 2] - b[:, 0], 1e-6)
    bh = np.maximum(b[:, 3] - b[:, 1], 1e-6)
    place_x = (subject.centroid[0] - b[:, 0]) / bw
    place_y = (subject.centroid[1] - b[:, 1]) / bh
    log_aspect = np.log(bw * img_w / (bh * img_h))
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    conf = np.full(n, subject.confidence)
    stats = np.stack([keep, edge, face_cut, margin, place_x, place_y, area, log_aspect, cx, cy, conf], axis=1)
    return stats.astype(np.float32)


def _edge_cut(weights: np.ndarray, b: np.ndarray, samples: int = 16) -> np.ndarray:
    """Largest mean subject weight along any of a box's four edges that lies inside the frame."""
    h, w = weights.shape
    t = (np.arange(samples) + 0.5) / samples
    out = np.zeros(len(b))

    def sample(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        # one of xs / ys is a column (N x 1: the edge's position), the other N x samples: indices broadcast
        xi = np.clip((xs * w).astype(int), 0, w - 1)
        yi = np.clip((ys * h).astype(int), 0, h - 1)
        return weights[yi, xi].mean(axis=1)

    along_x = b[:, 0:1] + (b[:, 2:3] - b[:, 0:1]) * t
    along_y = b[:, 1:2] + (b[:, 3:4] - b[:, 1:2]) * t
    inset_x, inset_y = 0.5 / w, 0.5 / h
    for edge_pos, axis, on_border in (
        (b[:, 0] + inset_x, "x", b[:, 0] <= 1e-3),
        (b[:, 2] - inset_x, "x", b[:, 2] >= 1 - 1e-3),
        (b[:, 1] + inset_y, "y", b[:, 1] <= 1e-3),
        (b[:, 3] - inset_y, "y", b[:, 3] >= 1 - 1e-3),
    ):
        vals = sample(edge_pos[:, None], along_y) if axis == "x" else sample(along_x, edge_pos[:, None])
        out = np.maximum(out, np.where(on_border, 0.0, vals))
    return out


@lru_cache(maxsize=1)
def geometry_prior() -> dict:
    return json.loads(GEOMETRY_FILE.read_text())


def geometry_log_prior(area: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    prior = geometry_prior()
    edges = np.asarray(prior["area_bins"])
    density = np.asarray(prior["area_density"])
    idx = np.clip(np.searchsorted(edges, area, side="right") - 1, 0, len(density) - 1)
    (mx, my), (sx, sy) = prior["center_mean"], prior["center_std"]
    return np.log(density[idx] * len(density)) - 0.5 * (((cx - mx) / sx) ** 2 + ((cy - my) / sy) ** 2)


# Weights of the composition scorer (log-score units).
W_LOST_SUBJECT = 12.0  # per unit of subject mass below KEEP_TARGET: losing the subject is the worst error
KEEP_TARGET = 0.97
W_FACE_CUT = 25.0  # a cut face is never acceptable while an alternative exists
W_EDGE = 8.0  # an edge through the subject looks like an accident
W_MARGIN = 1.5  # moderate framing around a clear subject: crop side ~1.8x the subject's (personas, FLMS)
PREFERRED_MARGIN = math.log(1.8)
MARGIN_SPREAD = 0.45
W_PLACE = 1.0  # subject centre near the middle or a third of the crop
W_GEOMETRY = 0.6  # real human crops: how much of the frame they keep, where their centre lies


class CompositionScorer:
    """The explicit, documented baseline scorer (``--scorer composition``)."""

    name = "composition"
    version = "composition-1"
    temperature = 1.0

    def score(
        self, analysis: ImageAnalysis, boxes: np.ndarray, user: object = None, ratio: object = None
    ) -> np.ndarray:
        return self.score_stats(candidate_stats(analysis, boxes))

    @staticmethod
    def score_stats(stats: np.ndarray) -> np.ndarray:
        col = {name: stats[:, i].astype(np.float64) for i, name in enumerate(STAT_NAMES)}
        conf = col["subject_conf"]
        lost = np.clip(KEEP_TARGET - col["keep"], 0, None)
        s = -W_LOST_SUBJECT * lost * (0.3 + 0.7 * conf)
        s -= W_FACE_CUT * col["face_cut"]
        s -= W_EDGE * col["edge"]
        s -= W_MARGIN * conf * ((col["margin"] - PREFERRED_MARGIN) / MARGIN_SPREAD) ** 2 / 2
        # Placement: distance of the subject centre to the nearest of the centre and the thirds.
        dx = np.min(np.abs(col["place_x"][:, None] - np.array([1 / 3, 0.5, 2 / 3])), axis=1)
        dy = np.min(np.abs(col["place_y"][:, None] - np.array([1 / 3, 0.45, 2 / 3])), axis=1)
        s -= W_PLACE * conf * (dx**2 + dy**2) / (2 * 0.08**2) * 0.1
        s += W_GEOMETRY * geometry_log_prior(col["area"], col["cx"], col["cy"])
        return s.astype(np.float32)
