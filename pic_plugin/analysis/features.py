"""Per-image features: what scoring needs to know about one photo, cached in the catalog.

``ImageAnalysis`` holds the reduced multi-scale CNN map (``fmap``), a subject-probability map (``subject``)
and the faces. ``extract.analyze`` fills it with one backbone pass (``heads.py`` holds the networks; this module
is plain data, so ``pic --help`` and an unchanged re-run never import torch).
The compact result is what the catalog caches, so scoring again after a fine-tune needs no image work.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pic_plugin.core.geometry import Box
from pic_plugin.imaging.faces import Face

if TYPE_CHECKING:
    pass

#: Bump when the cached per-image features change meaning (new head weights, other input size).
#: feat-3: the objects the detector found (``objects``) are part of the features.
FEATURE_VERSION = "feat-3"
#: The same features without the object detector (``pic batch --fast``): cached apart, so a full run redoes them.
FAST_FEATURE_VERSION = FEATURE_VERSION + "-fast"
FEATURE_CHANNELS = 16
INPUT_SHORT_SIDE = 224
INPUT_MAX_LONG_SIDE = 448


@dataclass(frozen=True)
class Detection:
    """An object the detector found (``detector.detect_objects``)."""

    box: Box  # normalized (left, top, right, bottom) in the displayed frame
    score: float  # 0..1
    label: str  # COCO class name, e.g. "person", "dog"


@dataclass
class ImageAnalysis:
    """Everything scoring needs about one image; cached in the catalog (see ``to_bytes``)."""

    size: tuple[int, int]  # full displayed size (W, H)
    fmap: np.ndarray  # C x h x w float16, stride-16 reduced CNN features
    subject: np.ndarray  # h8 x w8 float32 in [0, 1]: probability that a pixel belongs to the main subject
    faces: list[Face] = field(default_factory=list)
    objects: list[Detection] = field(default_factory=list)  # the detector's objects, best first
    version: str = FEATURE_VERSION

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        faces = np.array([[*f.box, f.score] for f in self.faces], dtype=np.float32).reshape(-1, 5)
        np.savez_compressed(
            buf,
            size=np.array(self.size, dtype=np.int64),
            fmap=self.fmap.astype(np.float16),
            subject=self.subject.astype(np.float16),
            faces=faces,
            objects=np.array([[*o.box, o.score] for o in self.objects], dtype=np.float32).reshape(-1, 5),
            labels=np.array([o.label for o in self.objects], dtype=str),
            version=np.array(self.version),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageAnalysis:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            faces = [Face(Box(*map(float, row[:4])), float(row[4])) for row in z["faces"]]
            objects = []
            if "objects" in z.files:  # features from before feat-3 have none (and are recomputed: version)
                objects = [
                    Detection(Box(*map(float, row[:4])), float(row[4]), str(label))
                    for row, label in zip(z["objects"], z["labels"], strict=True)
                ]
            return cls(
                size=(int(z["size"][0]), int(z["size"][1])),
                fmap=z["fmap"].astype(np.float16),
                subject=z["subject"].astype(np.float32),
                faces=faces,
                objects=objects,
                version=str(z["version"]),
            )


def input_shape(width: int, height: int) -> tuple[int, int]:
    """Backbone input (W, H): short side INPUT_SHORT_SIDE, multiples of 32, long side capped."""
    aspect = width / max(height, 1)
    if aspect >= 1:
        w = min(INPUT_MAX_LONG_SIDE, max(32, round(INPUT_SHORT_SIDE * aspect / 32) * 32))
        h = max(32, min(INPUT_SHORT_SIDE, round(w / aspect / 32) * 32))
    else:
        h = min(INPUT_MAX_LONG_SIDE, max(32, round(INPUT_SHORT_SIDE / aspect / 32) * 32))
        w = max(32, min(INPUT_SHORT_SIDE, round(h * aspect / 32) * 32))
    return w, h


# --- per-candidate helpers ------------------------------------------------------------------------------------

class IntegralMap:
    """Summed-area table of a map, for O(1) box sums at any normalized box."""

    def __init__(self, values: np.ndarray) -> None:
        self.h, self.w = values.shape
        table = np.zeros((self.h + 1, self.w + 1), dtype=np.float64)
        table[1:, 1:] = values.astype(np.float64).cumsum(0).cumsum(1)
        self.table = table
        self.total = float(table[-1, -1])

    def box_sum(self, boxes: np.ndarray) -> np.ndarray:
        """Sum inside each normalized box (N x 4), with bilinear weighting of partial cells."""
        x0 = boxes[:, 0] * self.w
        x1 = boxes[:, 2] * self.w
        y0 = boxes[:, 1] * self.h
        y1 = boxes[:, 3] * self.h
        return self._at(x1, y1) - self._at(x0, y1) - self._at(x1, y0) + self._at(x0, y0)

    def _at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Table value at fractional cell coordinates (bilinear between table corners)."""
        x = np.clip(x, 0, self.w)
        y = np.clip(y, 0, self.h)
        xi = np.minimum(np.floor(x).astype(int), self.w - 1)
        yi = np.minimum(np.floor(y).astype(int), self.h - 1)
        fx, fy = x - xi, y - yi
        t = self.table
        return (
            t[yi, xi] * (1 - fx) * (1 - fy)
            + t[yi, xi + 1] * fx * (1 - fy)
            + t[yi + 1, xi] * (1 - fx) * fy
            + t[yi + 1, xi + 1] * fx * fy
        )
