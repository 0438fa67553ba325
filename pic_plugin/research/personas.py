"""Simulated photographers ("framing personas", DESIGN section 6) for prior training and for evaluation.

No per-user crop study with images is reachable here, so personalization is trained and measured on simulated
users who frame the human-annotated main subject ``S`` of a photo the way a photographer with fixed habits would:

- ratio: a favourite aspect ratio used ``habit`` of the time (else the photo's original ratio); with
  ``follow_orientation`` a 3:2 shooter crops 2:3 on portrait photos, otherwise the ratio is taken as written;
- margin ``m`` and placement ``(ax, ay)``: the crop is the smallest box of the ratio that holds ``S`` scaled by
  ``m`` about its centre while S's centre lands at ``(ax, ay)`` inside the crop (0.5 = centred, 1/3 = a third),
  so an off-centre placement makes the crop larger rather than cutting the subject;
- clamped to the image (the largest box of the ratio when it cannot fit), then edge jitter of ``jitter``.

A ``frame`` persona ignores the subject and keeps a fixed part of the frame (scale and centre), like a
photographer who always trims the edges: the model must also learn habits that are not about the subject.

``design_family`` samples the family of DESIGN section 6 (the one the evaluation reports); ``broad_family``
samples the wider family the prior is trained on, so users outside the published family (a very loose framer,
a 16:9 shooter, a rule-of-thirds placer, a frame trimmer) are covered; ``check_personas`` are hand-made users of
that kind, never used for training. The model never sees ``S``: it sees the photo's features only.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np

from pic_plugin.core.geometry import ORIGINAL, Box, Ratio, iou, largest_box, parse_ratio
from pic_plugin.model.framing_rule import rule_aspect

#: Favourite ratios of the DESIGN family and how often each is drawn. Sampled so that two personas agree about
#: as much as two FLMS workers (mean pairwise IoU 0.618): measured by ``pairwise_agreement``.
DESIGN_RATIOS = {"original": 0.1, "3:2": 0.15, "1:1": 0.2, "4:5": 0.25, "16:9": 0.2, "9:16": 0.1}
BROAD_RATIOS = {
    "original": 0.2,
    "3:2": 0.12,
    "1:1": 0.14,
    "4:5": 0.12,
    "16:9": 0.1,
    "4:3": 0.08,
    "2:3": 0.06,
    "5:4": 0.06,
    "9:16": 0.04,
    "3:4": 0.04,
    "2:1": 0.04,
}
#: Share of DESIGN personas whose ratio turns with the photo (3:2 -> 2:3 on a portrait photo).
DESIGN_FOLLOW_ORIENTATION = 0.25
FLMS_PAIRWISE_IOU = 0.618


@dataclass(frozen=True)
class Persona:
    name: str
    ratio: str = "original"
    follow_orientation: bool = True
    habit: float = 0.9
    margin: float = 1.6
    ax: float = 0.5
    ay: float = 0.5
    jitter: float = 0.02
    kind: str = "subject"  # "subject": frames S; "frame": keeps a fixed part of the frame
    frame_scale: float = 0.85  # "frame" personas: side of the crop relative to the largest box of the ratio
    seed: int = 0
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def aspect_for(self, size: tuple[int, int], favourite: bool) -> float:
        """Pixel aspect of this persona's crop on an image of ``size`` (the framing rule's own ratio logic)."""
        value = rule_aspect(self.ratio if favourite else "original", self.follow_orientation, size)
        assert value is not None  # personas always have a ratio
        return value

    def requested_ratio(self, size: tuple[int, int]) -> Ratio:
        """The ratio this persona would ask ``pic batch --ratio`` for on a photo of ``size``."""
        if self.ratio == "original":
            return ORIGINAL
        r = parse_ratio(self.ratio)
        assert r.width is not None and r.height is not None
        if self.follow_orientation and r.width != r.height and (r.width > r.height) != (size[0] >= size[1]):
            return parse_ratio(f"{r.height:g}:{r.width:g}")
        return r

    def crop(self, subject: Box, size: tuple[int, int], photo_key: str) -> Box:
        """This persona's crop of a photo (deterministic per persona and photo)."""
        rng = np.random.default_rng(_seed(self.seed, self.name, photo_key))
        favourite = bool(rng.random() < self.habit)
        aspect = self.aspect_for(size, favourite)
        w, h = size
        max_w, max_h = largest_box(aspect, size)
        if self.kind == "frame":
            bw, bh = max_w * self.frame_scale, max_h * self.frame_scale
            cx = 0.5 + (self.ax - 0.5) * (1 - bw)
            cy = 0.5 + (self.ay - 0.5) * (1 - bh)
        else:
            # Smallest box of the aspect that holds S scaled by m about its centre while S's centre sits at
            # (ax, ay) of the box (pixel units keep the aspect exact).
            sw, sh = subject.width * w * self.margin, subject.height * h * self.margin
            need_w = sw / (2 * min(self.ax, 1 - self.ax))
            need_h = sh / (2 * min(self.ay, 1 - self.ay))
            bw_px = max(need_w, need_h * aspect)
            bw, bh = bw_px / w, bw_px / aspect / h
            if bw > max_w or bh > max_h:
                bw, bh = max_w, max_h
            scx, scy = subject.center
            cx = scx - (self.ax - 0.5) * bw
            cy = scy - (self.ay - 0.5) * bh
        cx = min(max(cx, bw / 2), 1 - bw / 2)
        cy = min(max(cy, bh / 2), 1 - bh / 2)
        box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        box = box + rng.normal(0.0, self.jitter, 4) if self.jitter > 0 else box
        box = np.clip(box, 0.0, 1.0)
        # Jitter never turns a crop inside out: keep at least 5% of each side.
        x0, x1 = sorted((box[0], box[2]))
        y0, y1 = sorted((box[1], box[3]))
        x1, y1 = max(x1, min(1.0, x0 + 0.05)), max(y1, min(1.0, y0 + 0.05))
        x0, y0 = min(x0, x1 - 0.05), min(y0, y1 - 0.05)
        return Box(float(x0), float(y0), float(x1), float(y1))

    def attributes(self) -> dict[str, str]:
        """This persona as profile attributes (what a user could tell ``pic profile``)."""
        if self.kind == "frame":
            framing = "loose"
        else:
            framing = "tight" if self.margin < 1.5 else "loose" if self.margin > 2.1 else "medium"
        return {
            "ratio": self.ratio,
            "orientation": "follow" if self.follow_orientation else "fixed",
            "framing": framing,
            "placement": placement_name(self.ax, self.ay),
            **self.extra,
        }

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def placement_name(ax: float, ay: float) -> str:
    """Coarse placement words: centred, left/right (subject on a vertical third), high/low."""
    if abs(ax - 0.5) < 0.08 and abs(ay - 0.5) < 0.08:
        return "centred"
    horizontal = "left" if ax < 0.42 else "right" if ax > 0.58 else ""
    vertical = "high" if ay < 0.42 else "low" if ay > 0.58 else ""
    return "-".join(p for p in (vertical, horizontal) if p) or "centred"


def _seed(*parts: object) -> int:
    return int(hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _choice(rng: np.random.Generator, table: dict[str, float]) -> str:
    names = list(table)
    p = np.asarray([table[n] for n in names], dtype=float)
    return str(names[int(rng.choice(len(names), p=p / p.sum()))])


def design_family(n: int, seed: int = 0, prefix: str = "design") -> list[Persona]:
    """Personas of DESIGN section 6: habit 0.9, margin U[1.15, 2.5], ax in [0.3, 0.7], ay in [0.35, 0.6].

    Placement is drawn as photographers place subjects: centred or on a third (horizontally), centred or a
    little high (vertically), with some spread, kept inside DESIGN's ranges. Uniform placement makes personas
    agree more than real people do (the subjects of these photos are large, so many crops clamp to the frame).
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ratio = _choice(rng, DESIGN_RATIOS)
        follow = bool(rng.random() < DESIGN_FOLLOW_ORIENTATION)
        margin = float(rng.uniform(1.15, 2.5))
        ax = float(np.clip(rng.choice([1 / 3, 0.5, 2 / 3], p=[0.3, 0.4, 0.3]) + rng.normal(0, 0.03), 0.3, 0.7))
        ay = float(np.clip(rng.choice([0.38, 0.5]) + rng.normal(0, 0.03), 0.35, 0.6))
        out.append(
            Persona(
                name=f"{prefix}-{seed}-{i}",
                ratio=ratio,
                follow_orientation=follow,
                habit=0.9,
                margin=margin,
                ax=ax,
                ay=ay,
                jitter=0.02,
                seed=seed * 100_003 + i,
            )
        )
    return out


def broad_family(n: int, seed: int = 1) -> list[Persona]:
    """The wider family the prior trains on: more ratios, looser and tighter framing, frame trimmers."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = "frame" if rng.random() < 0.12 else "subject"
        out.append(
            Persona(
                name=f"broad-{seed}-{i}",
                ratio=_choice(rng, BROAD_RATIOS),
                follow_orientation=bool(rng.random() < 0.5),
                habit=float(rng.uniform(0.6, 1.0)),
                margin=float(math.exp(rng.uniform(math.log(1.0), math.log(3.6)))),
                ax=float(rng.uniform(0.2, 0.8)),
                ay=float(rng.uniform(0.25, 0.72)),
                jitter=float(rng.uniform(0.0, 0.04)),
                kind=kind,
                frame_scale=float(rng.uniform(0.6, 1.0)),
                seed=seed * 100_003 + i,
            )
        )
    return out


def check_personas() -> list[Persona]:
    """Hand-made users outside the DESIGN family (never trained on): the "other users" check."""
    return [
        Persona("thirds-placer", ratio="3:2", follow_orientation=True, margin=1.9, ax=2 / 3, ay=1 / 3, seed=1),
        Persona("very-loose", ratio="original", margin=3.2, ax=0.5, ay=0.5, seed=2),
        Persona("widescreen", ratio="16:9", follow_orientation=False, margin=1.5, ax=0.5, ay=0.45, seed=3),
        Persona("tight-square", ratio="1:1", margin=1.08, ax=0.5, ay=0.5, seed=4),
        Persona("portrait-high", ratio="4:5", follow_orientation=False, margin=1.6, ax=0.5, ay=0.3, seed=5),
        Persona("edge-trimmer", ratio="original", kind="frame", frame_scale=0.88, ax=0.5, ay=0.55, seed=6),
    ]


def tuning_personas() -> list[Persona]:
    """Hand-made users unlike the DESIGN family, for choosing weights on the validation fold
    (``scripts/tune_rule_weights.py``): other habits than ``check_personas``, so that check stays unseen."""
    return [
        Persona("tight-portrait", ratio="4:5", follow_orientation=True, margin=1.15, ax=0.5, ay=0.45, seed=11),
        Persona("wide-loose", ratio="16:9", follow_orientation=False, margin=2.6, ax=0.5, ay=0.5, seed=12),
        Persona("low-horizon", ratio="3:2", follow_orientation=True, margin=2.0, ax=0.5, ay=0.62, seed=13),
        Persona("heavy-trimmer", ratio="original", kind="frame", frame_scale=0.75, ax=0.5, ay=0.5, seed=14),
        Persona("square-left", ratio="1:1", margin=1.4, ax=0.38, ay=0.5, seed=15),
        Persona("cinema-trimmer", ratio="16:9", follow_orientation=False, kind="frame", frame_scale=0.95, ax=0.5,
                ay=0.45, seed=16),
    ]


def pairwise_agreement(personas: list[Persona], photos: list[tuple[str, Box, tuple[int, int]]]) -> float:
    """Mean IoU between two different personas' crops of the same photo (FLMS workers: 0.618)."""
    values = []
    for key, subject, size in photos:
        crops = [p.crop(subject, size, key) for p in personas]
        values.extend(iou(a, b) for a, b in combinations(crops, 2))
    return float(np.mean(values)) if values else float("nan")
