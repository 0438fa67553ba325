"""From one image's features to a crop suggestion: candidates -> scores -> refinement -> top-k.

This is the one place that turns scores into the crops pic reports, so the CLI, the watcher, the review page
and the editor plugins all agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pic_plugin.analysis import candidates as cand
from pic_plugin.analysis.features import ImageAnalysis
from pic_plugin.analysis.subject import find_subject
from pic_plugin.core.geometry import Box, Ratio, iou, snap_to_ratio
from pic_plugin.core.suggestion import Alternative, Scorer, Suggestion

#: Alternatives must differ from the crops already chosen at least this much.
ALTERNATIVE_MAX_IOU = 0.8
#: Candidates this close to the winner count as "the same crop" for the confidence.
SAME_CROP_IOU = 0.8
REFINE_TOP = 4
#: Coarse-to-fine search (scorers with ``coarse_stride`` > 1, on pools at least this large): the best
#: COARSE_TOP of the sampled candidates, and every candidate within COARSE_NEAR_IOU of one of them, are scored.
COARSE_MIN_CANDIDATES = 1000
COARSE_TOP = 8
COARSE_REGIONS = 6  # ... and the best sampled candidate of each of this many distinct regions (the alternatives)
COARSE_NEAR_IOU = 0.7


@dataclass(frozen=True)
class Anchor:
    """A crop the scorer expects for this photo (a user's framing rule, ``framing_rule``): it joins the
    candidates, and every candidate gains ``weight`` x its IoU with it. Scorers may offer one through
    ``anchor(analysis, ratio, user) -> Anchor | None``."""

    box: Box
    weight: float
    aspect: float | None = None  # pixel aspect its neighbours keep (None: free)


class _Anchored:
    """``scorer`` plus the anchor's bonus (what ``suggest`` scores with when the scorer offers an anchor)."""

    def __init__(self, scorer: Scorer, anchor: Anchor) -> None:
        self.scorer, self.anchor = scorer, anchor
        self.name, self.version, self.temperature = scorer.name, scorer.version, scorer.temperature
        self.coarse_stride = int(getattr(scorer, "coarse_stride", 1))
        self._box = np.asarray(tuple(anchor.box), dtype=np.float64)

    def score(
        self, analysis: ImageAnalysis, boxes: np.ndarray, user: Any = None, ratio: Ratio | None = None
    ) -> np.ndarray:
        base = np.asarray(self.scorer.score(analysis, boxes, user, ratio), dtype=np.float64)
        return base + self.anchor.weight * box_ious(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), self._box)


def suggest(
    analysis: ImageAnalysis,
    scorer: Scorer,
    ratio: Ratio,
    top_k: int = 3,
    user: Any = None,
    path: str = "",
    user_name: str | None = None,
) -> Suggestion:
    size = analysis.size
    pool = cand.generate(size, ratio)
    boxes = pool.boxes
    offer = getattr(scorer, "anchor", None)
    anchor: Anchor | None = offer(analysis, ratio, user) if offer is not None else None
    if anchor is not None:
        scorer = _Anchored(scorer, anchor)
    stride = int(getattr(scorer, "coarse_stride", 1))
    if stride > 1 and len(boxes) >= COARSE_MIN_CANDIDATES:
        scores, beliefs = _coarse_to_fine(analysis, scorer, user, ratio, boxes, stride)
    else:
        scores = np.asarray(scorer.score(analysis, boxes, user, ratio), dtype=np.float64)
        beliefs = scores

    # Local refinement around the best few: candidates are a grid, the best crop is usually between points.
    order = np.argsort(-scores)[:REFINE_TOP]
    extra = []
    for i in order:
        box = pool.box(int(i))
        aspect = None if pool.ratios[i] == "free" else box.pixel_aspect(size)
        extra.extend(cand.jitter(box, size, aspect))
    if anchor is not None:  # the anchor itself and its neighbours compete too (the grid may not hold it)
        extra.append(anchor.box)
        extra.extend(cand.jitter(anchor.box, size, anchor.aspect))
    if extra:
        extra_arr = np.asarray(extra, dtype=np.float32)
        boxes = np.concatenate([boxes, extra_arr])
        extra_scores = np.asarray(scorer.score(analysis, extra_arr, user, ratio), dtype=np.float64)
        scores = np.concatenate([scores, extra_scores])
        beliefs = np.concatenate([beliefs, extra_scores])

    scores = np.where(np.isfinite(scores), scores, -1e9)
    beliefs = np.where(np.isfinite(beliefs), beliefs, -1e9)
    probs = _softmax(beliefs / max(scorer.temperature, 1e-6))
    ranked = np.argsort(-scores)
    chosen: list[int] = []
    for i in ranked:
        b = Box(*(float(v) for v in boxes[i]))
        if all(iou(b, Box(*(float(v) for v in boxes[j]))) < ALTERNATIVE_MAX_IOU for j in chosen):
            chosen.append(int(i))
        if len(chosen) >= max(1, top_k):
            break

    def belief(i: int) -> float:
        ious = box_ious(boxes, boxes[i])
        return float(probs[ious >= SAME_CROP_IOU].sum())

    crops = [snap_to_ratio(Box(*(float(v) for v in boxes[i])), size, ratio).rounded(6) for i in chosen]
    subject = find_subject(analysis)
    return Suggestion(
        path=path,
        crop=crops[0],
        score=belief(chosen[0]),
        ratio=ratio.name,
        size=size,
        model=scorer.version,
        user=user_name,
        alternatives=[Alternative(c, belief(i)) for c, i in zip(crops[1:], chosen[1:], strict=True)],
        subject=subject.box if subject is not None else None,
        subject_kind=subject.kind if subject is not None else None,
    )


def _coarse_to_fine(
    analysis: ImageAnalysis, scorer: Scorer, user: Any, ratio: Ratio, boxes: np.ndarray, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """Score every ``stride``-th candidate, then every candidate near the best of those (a scorer whose scores
    vary smoothly over neighbouring boxes loses nothing, at a fraction of the cost).

    Returns (scores: NaN where not scored, so never chosen; beliefs: scores with each unscored candidate given
    the score of the sampled candidate before it in the pool, which holds its neighbours in order, so the
    confidence is still a share of the whole pool)."""
    n = len(boxes)
    first = np.arange(0, n, stride)
    scores = np.full(n, np.nan)
    scores[first] = np.asarray(scorer.score(analysis, boxes[first], user, ratio), dtype=np.float64)
    ranked = first[np.argsort(-np.nan_to_num(scores[first], nan=-np.inf))]
    b64 = boxes.astype(np.float64)
    # Seeds: the best sampled candidates, and the best of each region the alternatives may come from.
    seeds = list(ranked[:COARSE_TOP])
    diverse: list[int] = []
    for i in ranked[: COARSE_TOP * 20]:
        if not diverse or float(box_ious(b64[diverse], b64[i]).max()) < ALTERNATIVE_MAX_IOU:
            diverse.append(int(i))
            if len(diverse) >= COARSE_REGIONS:
                break
    near = np.zeros(n, dtype=bool)
    for i in set(seeds) | set(diverse):
        near |= box_ious(b64, b64[i]) >= COARSE_NEAR_IOU
    second = np.flatnonzero(near & np.isnan(scores))
    if len(second):
        scores[second] = np.asarray(scorer.score(analysis, boxes[second], user, ratio), dtype=np.float64)
    beliefs = scores.copy()
    unscored = np.isnan(beliefs)
    beliefs[unscored] = scores[(np.flatnonzero(unscored) // stride) * stride]
    return scores, beliefs


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def box_ious(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each row of ``boxes`` (N x 4, normalized) with ``box`` (4,)."""
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = ix * iy
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter / np.maximum(areas + area - inter, 1e-12)
