"""Which part of the photo is *the* subject: pic's subject map, the faces and the objects the detector found, joined.

The subject map (``heads``) knows what looks salient on the photos it learned from; the COCO detector
(``detector``) knows people, animals, vehicles and everyday objects wherever they are. They fail on different
photos, so the subject is the map's box joined with the detector's main object (the most confident large one:
score x sqrt(area)) when the detector is sure enough (``OBJECT_MIN_SCORE``). The rule and its threshold were
chosen leaving one annotation source out at a time (``scripts/measure_subject_boxes.py --loso``; README
"Finding the subject"). Without a main object and without subject mass in the map there is no subject
(a landscape, a texture): ``find_subject`` says so with ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pic_plugin.analysis.features import Detection, ImageAnalysis
from pic_plugin.core.geometry import Box

#: A detection is the main object when its score is at least this (chosen leaving one source out, see above).
OBJECT_MIN_SCORE = 0.4
#: How much subject probability the main object's box adds to the map (the composition features keep it whole).
OBJECT_FILL = 0.5
#: Below this map confidence (and without a main object) pic sees no subject.
NO_SUBJECT_CONFIDENCE = 0.05


@dataclass(frozen=True)
class Subject:
    box: Box  # normalized, displayed frame
    kind: str | None  # the main object's COCO label ("person", "dog", ...), "face", or None (from the map alone)
    confidence: float  # 0..1


def main_object(objects: Sequence[Detection], min_score: float = OBJECT_MIN_SCORE) -> Detection | None:
    """The detection that is the subject: the most confident large one (score x sqrt(area))."""
    sure = [o for o in objects if o.score >= min_score and o.box.area > 0]
    return max(sure, key=lambda o: o.score * math.sqrt(o.box.area)) if sure else None


def join(map_box: Box, obj: Detection | None) -> Box:
    """The map's box joined with the main object's box (the map alone without one)."""
    if obj is None:
        return map_box
    a, b = map_box, obj.box
    return Box(min(a.left, b.left), min(a.top, b.top), max(a.right, b.right), max(a.bottom, b.bottom))


@dataclass
class SubjectSummary:
    """The subject as the composition features see it."""

    weights: np.ndarray  # h x w, subject probability with faces and the main object added
    box: tuple[float, float, float, float]  # normalized box holding most of the subject mass (and the main object)
    centroid: tuple[float, float]
    confidence: float  # 0 = no clear subject (landscape, texture), 1 = a clear one
    kind: str | None = None  # the main object's label, when the detector found one


@dataclass(frozen=True)
class SubjectRule:
    """How the map, the faces and the main object become one subject box (chosen leaving one source out)."""

    floor: float = 0.1  # subject probability below this is background
    tail: float = 0.005  # the map's box leaves out this share of the subject mass on each side
    min_score: float = OBJECT_MIN_SCORE  # a detection is the main object from this score
    fill: float = OBJECT_FILL  # subject probability the main object's box adds (x its score)
    blend: float = 0.0  # 0: the map's box joined with the object's; 1: the object's box alone


SUBJECT_RULE = SubjectRule()


def summarize_subject(analysis: ImageAnalysis, rule: SubjectRule = SUBJECT_RULE) -> SubjectSummary:
    s = analysis.subject.astype(np.float32).copy()
    h, w = s.shape
    for face in analysis.faces:
        x0, y0, x1, y1 = face.box.to_pixels((w, h))
        s[y0:y1, x0:x1] = np.maximum(s[y0:y1, x0:x1], min(1.0, face.score + 0.1))
    obj = main_object(analysis.objects, rule.min_score)
    if obj is not None and rule.fill > 0:
        x0, y0, x1, y1 = obj.box.to_pixels((w, h))
        s[y0:y1, x0:x1] = np.maximum(s[y0:y1, x0:x1], rule.fill * obj.score)
    # Mass counts pixels that may be subject; the faintest background activation is not. A low floor keeps
    # thin parts (legs, tails, masts) that the map rates uncertain: losing them is what people notice.
    mass = np.clip((s - rule.floor) / (1 - rule.floor), 0, 1)
    total = float(mass.sum())
    confidence = float(min(1.0, total / (0.01 * h * w))) if total > 0 else 0.0
    kind = obj.label if obj is not None else None
    if total <= 1e-6:
        if obj is None:
            return SubjectSummary(mass, (0.0, 0.0, 1.0, 1.0), (0.5, 0.5), 0.0, kind)
        map_box, centroid = obj.box, obj.box.center
    else:
        cols, rows = mass.sum(0) / total, mass.sum(1) / total
        (left, right), (top, bottom) = _quantile_span(cols, rule.tail, 1 - rule.tail), _quantile_span(rows, rule.tail, 1 - rule.tail)
        map_box = Box(left, top, right, bottom)
        xs, ys = (np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h
        centroid = (float((cols * xs).sum()), float((rows * ys).sum()))
    box = join(map_box, obj)
    if obj is not None:
        box = _lerp(box, obj.box, rule.blend)
        confidence = max(confidence, obj.score)
    return SubjectSummary(mass, tuple(box), centroid, confidence, kind)  # type: ignore[arg-type]


def _lerp(a: Box, b: Box, t: float) -> Box:
    if t <= 0:
        return a
    return Box(*(x + (y - x) * t for x, y in zip(a, b, strict=True)))


def find_subject(analysis: ImageAnalysis) -> Subject | None:
    """The subject pic frames (what ``pic suggest --json`` reports), or None when it sees none."""
    summary = summarize_subject(analysis)
    if summary.kind is None and summary.confidence < NO_SUBJECT_CONFIDENCE:
        return None
    kind = summary.kind or ("face" if analysis.faces else None)
    return Subject(Box(*summary.box), kind, summary.confidence)


def _quantile_span(profile: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    c = np.cumsum(profile)
    n = len(profile)
    start = float(np.searchsorted(c, lo)) / n
    end = float(np.searchsorted(c, hi) + 1) / n
    return max(0.0, start), min(1.0, end)
