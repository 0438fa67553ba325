"""What every layer says about a suggestion: the crop pic suggests (``Suggestion``, its ``Alternative`` crops) and
the interface of a crop scorer (``Scorer``). Plain data, no numpy: the editors' writers import it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pic_plugin.core.geometry import Box, Ratio

if TYPE_CHECKING:
    import numpy as np

    from pic_plugin.analysis.features import ImageAnalysis


class Scorer(Protocol):
    name: str
    version: str
    temperature: float

    def score(
        self, analysis: ImageAnalysis, boxes: np.ndarray, user: Any = None, ratio: Ratio | None = None
    ) -> np.ndarray:
        """One score per candidate (N x 4 normalized boxes); higher is better. ``ratio``: the ratio the crop is
        asked in (None: not told, e.g. scoring a dataset's crops)."""
        ...


@dataclass
class Alternative:
    crop: Box
    score: float


@dataclass
class Suggestion:
    path: str
    crop: Box
    score: float  # share of the scorer's belief on this crop (softmax over candidates, near-duplicates summed)
    ratio: str
    size: tuple[int, int]  # displayed size of the original, pixels
    model: str
    user: str | None = None
    alternatives: list[Alternative] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    subject: Box | None = None  # what pic framed (normalized, displayed frame); None: pic sees no subject
    subject_kind: str | None = None  # "person", "dog", ... (the detector's label), "face", or None (unknown)

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines contract of DESIGN section 3."""
        return {
            "path": self.path,
            "crop": self.crop.as_list(),
            "score": round(self.score, 4),
            "ratio": self.ratio,
            "alternatives": [{"crop": a.crop.as_list(), "score": round(a.score, 4)} for a in self.alternatives],
            "user": self.user,
            "model": self.model,
            "size": list(self.size),
            "subject": self.subject.rounded(4).as_list() if self.subject is not None else None,
            "subject_kind": self.subject_kind,
        }

    @property
    def crops(self) -> list[Box]:
        return [self.crop, *(a.crop for a in self.alternatives)]
