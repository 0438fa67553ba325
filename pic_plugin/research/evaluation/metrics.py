"""Metrics against a reference crop: IoU, BDE (mean of the four normalized edge displacements), hit rate (IoU >= 0.8:
accepted as is); against the photo: subject retention (the crop keeps >= 95% of the annotated subject box) and
face cuts (a detected face partly inside the crop); GAIC's Acc K/N and SRCC on human-scored crops."""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pic_plugin.core.geometry import (
    Box,
    bde,
    contains_fraction,
    iou,
)
from pic_plugin.imaging.faces import Face

HIT_IOU = 0.8
RETAIN = 0.95



# --- metrics --------------------------------------------------------------------------------------------------


def cuts_face(box: Box, faces: Sequence[Face]) -> bool:
    """A face is cut when it is neither (almost) wholly inside nor wholly outside the crop."""
    for face in faces:
        inside = contains_fraction(box, face.box)
        if 0.02 < inside < 0.98:
            return True
    return False


@dataclass
class Tally:
    """Running sums of the metrics of one method (and k)."""

    n: int = 0
    iou: float = 0.0
    bde: float = 0.0
    hits: int = 0
    retained: int = 0
    with_subject: int = 0
    face_photos: int = 0
    face_cuts: int = 0

    def add(self, pred: Box, ref: Box, subject: Box | None = None, faces: Sequence[Face] = ()) -> None:
        v = iou(pred, ref)
        self.n += 1
        self.iou += v
        self.bde += bde(pred, ref)
        self.hits += v >= HIT_IOU
        if subject is not None:
            self.with_subject += 1
            self.retained += contains_fraction(pred, subject) >= RETAIN
        if faces:
            self.face_photos += 1
            self.face_cuts += cuts_face(pred, faces)

    def summary(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {
            "n": self.n,
            "iou": self.iou / n,
            "bde": self.bde / n,
            "hit": self.hits / n,
            "retention": self.retained / max(self.with_subject, 1),
            "face_photos": self.face_photos,
            "face_cuts": self.face_cuts,
        }




# --- scored crops (GAICD) -------------------------------------------------------------------------------------


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank (for Spearman's rho)."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_v = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rank_average(a), rank_average(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def gaic_metrics(predicted: np.ndarray, mos: np.ndarray) -> dict[str, float]:
    """GAIC's Acc K/N (share of the K best-predicted crops that are among the N best by MOS) and SRCC."""
    predicted, mos = np.asarray(predicted, dtype=float), np.asarray(mos, dtype=float)
    order_pred = np.argsort(-predicted, kind="mergesort")
    out: dict[str, float] = {}
    for n in (5, 10):
        # Ties at the N-th MOS count as "among the best N" (GAICD's MOS take few distinct values).
        threshold = np.sort(mos)[::-1][min(n, len(mos)) - 1]
        for k in (1, 4):
            out[f"acc{k}/{n}"] = float(np.mean(mos[order_pred[:k]] >= threshold))
    out["srcc"] = spearman(predicted, mos)
    return out


