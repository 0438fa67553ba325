"""A user's framing habit as an explicit rule fitted to their crops.

Photographers describe how they frame in a few numbers: the ratio they crop to, how much room they leave around
the subject, where the subject sits in the crop (centred, on a third, a little high). Some ignore the subject
and trim the frame the same way every time. A ``FramingRule`` is one of those habits:

- ``kind="subject"``: the crop is the smallest box of the rule's aspect that holds pic's subject box scaled by
  ``(sx, sy)`` about its centre while the subject's centre lands at ``(ax, ay)`` inside the crop (a fixed ratio
  has one margin, ``sx == sy``; a free-form cropper has one per axis);
- ``kind="frame"``: the crop keeps ``(sx, sy)`` of the largest box of the aspect, placed at ``(ax, ay)``;

clamped to the frame. ``fit_rule`` finds the rule that reproduces the user's crops best (mean IoU, grid search
then a finer grid around the best; which kind of rule — a fixed ratio, free-form, a frame trimmer — by
leave-one-out, so that a few crops cannot buy a rule with more freedom than they support), on pic's *own* subject
estimate, so the errors of that estimate are part of what the fit absorbs. A handful of parameters is pinned down by a few crops where the network's latent and
adapter (``finetune.finetune``) are not: the user's scorer (``network.PicScorer``) adds a bonus for candidates
close to the rule's crop, weighted by how many crops the rule rests on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from pic_plugin.core.geometry import Box, Ratio, largest_box, parse_ratio

#: Ratios a rule may use, as written; with ``follow`` they turn with the photo (3:2 on landscapes, 2:3 on
#: portraits). "original" is the photo's own aspect; "free" keeps each crop's aspect to the margins.
RULE_RATIOS = ("original", "1:1", "4:5", "5:4", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "2:1", "1:2")
#: A fixed ratio is tried when it is the nearest one for at least this share of the crops (by weight).
RATIO_SHARE = 0.3
#: Free-form rules have one parameter more than fixed-ratio ones: they must beat them by this much (held-out IoU).
FREE_FORM_PENALTY = 0.01
#: Separate rules for portrait and landscape photos need this many crops of each, and must beat one rule by this
#: much held-out mean IoU.
SPLIT_MIN_CROPS = 4
SPLIT_GAIN = 0.01
#: At most this many crops enter the fit (the latest ones); the fit is a grid search over each of them.
MAX_FIT_CROPS = 300

_MARGINS = np.exp(np.linspace(math.log(1.0), math.log(3.6), 14))
_FREE_MARGINS = np.exp(np.linspace(math.log(1.0), math.log(3.6), 10))
_PLACES = np.linspace(0.25, 0.75, 11)
_FREE_PLACES = np.linspace(0.25, 0.75, 9)
_SCALES = np.linspace(0.6, 1.0, 9)


@dataclass(frozen=True)
class FramingRule:
    kind: str  # "subject" | "frame"
    ratio: str  # a RULE_RATIOS name or "free"
    follow: bool  # the ratio turns with the photo
    sx: float  # margin around the subject (subject) or share of the largest box kept (frame), horizontally
    sy: float  # ... vertically (equal to sx for a fixed ratio)
    ax: float  # where the subject's centre (subject) or the crop (frame) sits, 0..1
    ay: float
    fit: float = 0.0  # mean IoU of the rule's crops with the user's crops it was fitted on
    k: int = 0  # how many crops
    source: str = "crops"  # "crops": fitted by fit_rule; "profile": what the user said (rule_from_attributes);
    # "generic": GENERIC_RULE, for nobody in particular
    portrait: FramingRule | None = None  # used on portrait photos by a user who frames those differently

    def aspect(self, size: tuple[int, int], ratio: Ratio | None = None) -> float | None:
        """Pixel aspect of the rule's crop on a photo of ``size``: the requested ratio when there is one, else
        the rule's own (None: free-form)."""
        if ratio is not None and not ratio.is_free:
            return ratio.value_for(size)
        if self.portrait is not None and size[1] > size[0]:
            return self.portrait.aspect(size, ratio)
        return rule_aspect(self.ratio, self.follow, size)

    def box(self, subject: Box | Sequence[float], size: tuple[int, int], ratio: Ratio | None = None) -> Box:
        """The rule's crop of a photo of ``size`` whose subject (pic's estimate) is ``subject``."""
        if self.portrait is not None and size[1] > size[0]:
            return self.portrait.box(subject, size, ratio)
        s = np.asarray(tuple(subject), dtype=np.float64)[None]
        sizes = np.asarray([size], dtype=np.float64)
        aspect = self.aspect(size, ratio)
        one = np.ones(1)
        if self.kind == "frame":
            out = _frame_boxes(sizes, None if aspect is None else one * aspect, self.sx, self.sy, self.ax, self.ay)
        elif aspect is None or self.ratio != "free":
            out = _subject_boxes(s, sizes, None if aspect is None else one * aspect, self.sx, self.sy, self.ax, self.ay)
        else:  # a fixed ratio is asked of a free-form framer: their box, reshaped to the ratio (same area)
            out = _subject_boxes(s, sizes, None, self.sx, self.sy, self.ax, self.ay)
            out = _reshape(out, size, aspect)
        return Box(*(float(np.ravel(v)[0]) for v in out)).clamped()

    def describe(self) -> str:
        """The habit in words (``pic learn``, ``pic model``, ``pic profile``)."""
        basis = "from your profile" if self.source == "profile" else f"fits your {self.k} crops at mean IoU {self.fit:.2f}"
        if self.portrait is not None:
            return f"landscapes: {self._habit()}; portraits: {self.portrait._habit()}; {basis}"
        return f"{self._habit()}; {basis}"

    def _habit(self) -> str:
        ratio = {"free": "free-form crops", "original": "the photo's own ratio"}.get(self.ratio, self.ratio)
        if self.ratio not in ("free", "original", "1:1"):
            ratio += " (turned with the photo)" if self.follow else " (as written)"
        if self.kind == "frame":
            keep = f"keeps {100 * self.sx:.0f}% x {100 * self.sy:.0f}% of the frame"
            return f"{ratio}; {keep}, {_frame_words(self.ax, self.ay)}"
        room = f"{self.sx:.2f}x" if abs(self.sx - self.sy) < 1e-6 else f"{self.sx:.2f}x wide, {self.sy:.2f}x high"
        return f"{ratio}; room around the subject {room}; subject {_placement_words(self.ax, self.ay)}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("sx", "sy", "ax", "ay", "fit"):
            d[key] = round(float(d[key]), 4)
        d["portrait"] = self.portrait.to_dict() if self.portrait is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FramingRule:
        kind, ratio = str(d["kind"]), str(d["ratio"])
        source = str(d.get("source", "crops"))
        if kind not in ("subject", "frame") or (ratio not in RULE_RATIOS and ratio != "free") or source not in (
            "crops",
            "profile",
            "generic",
        ):
            raise ValueError(f"not a framing rule: {d!r}")
        return cls(
            kind=kind,
            ratio=ratio,
            follow=bool(d.get("follow", True)),
            sx=float(d["sx"]),
            sy=float(d["sy"]),
            ax=float(d["ax"]),
            ay=float(d["ay"]),
            fit=float(d.get("fit", 0.0)),
            k=int(d.get("k", 0)),
            source=source,
            portrait=cls.from_dict(d["portrait"]) if d.get("portrait") else None,
        )


#: Room around the subject for each ``framing`` word of a profile: the middle of the range the word stands for
#: (``personas.Persona.attributes``: tight below 1.5, loose above 2.1).
FRAMING_MARGINS = {"tight": 1.3, "medium": 1.8, "loose": 2.4}
#: Where ``placement`` words put the subject's centre (left / right: near a third; high / low: a little off).
PLACEMENT_X = {"left": 0.36, "right": 0.64}
PLACEMENT_Y = {"high": 0.4, "low": 0.6}


#: For nobody in particular, asked for a fixed ratio: the subject a little above the centre with medium room, which
#: on most photos means the largest box of the ratio slid onto the subject.
GENERIC_RULE = FramingRule("subject", "original", True, 1.8, 1.8, 0.5, 0.45, source="generic")


def rule_from_attributes(attributes: dict[str, Any] | None) -> FramingRule | None:
    """The rule a profile describes (``pic profile --set ratio=4:5 --set framing=tight``), or None when it says
    nothing about framing. Unknown values fall back to the photo's ratio, medium room, centred."""
    a = {str(k).strip().lower(): str(v).strip().lower() for k, v in (attributes or {}).items()}
    if not ({"ratio", "framing", "placement"} & a.keys()):
        return None
    ratio = a.get("ratio", "original")
    if ratio not in RULE_RATIOS:
        try:
            parsed = parse_ratio(ratio)
        except ValueError:
            parsed = None
        ratio = parsed.name if parsed is not None and parsed.name in RULE_RATIOS else "original"
    margin = FRAMING_MARGINS.get(a.get("framing", "medium"), FRAMING_MARGINS["medium"])
    place = a.get("placement", "centred").replace("thirds", "left")
    ax = next((v for key, v in PLACEMENT_X.items() if key in place), 0.5)
    ay = next((v for key, v in PLACEMENT_Y.items() if key in place), 0.5)
    follow = a.get("orientation", "follow") != "fixed"
    return FramingRule("subject", ratio, follow, margin, margin, ax, ay, source="profile")


def rule_aspect(ratio: str, follow: bool, size: tuple[int, int]) -> float | None:
    if ratio == "free":
        return None
    value = parse_ratio(ratio).value_for(size)
    assert value is not None
    w, h = size
    if follow and value != 1.0 and (value > 1) != (w >= h):
        value = 1 / value
    return value


@dataclass(frozen=True)
class RuleSample:
    """One of the user's crops with what the rule sees of its photo."""

    subject: tuple[float, float, float, float]  # pic's subject box (normalized)
    size: tuple[int, int]
    crop: Box
    weight: float = 1.0


def fit_rule(samples: Sequence[RuleSample]) -> FramingRule | None:
    """The rule that reproduces ``samples`` best (weighted mean IoU); None without usable samples.

    Photographers often frame portrait photos differently (4:5 for portraits, 16:9 for landscapes): when each
    orientation has SPLIT_MIN_CROPS crops and two rules do better on held-out crops than one (by SPLIT_GAIN), the
    rule carries a second one for portrait photos."""
    samples = [s for s in samples if s.weight > 0 and s.crop.area > 0][-MAX_FIT_CROPS:]
    one = _fit(samples)
    if one is None:
        return None
    portrait = [s for s in samples if s.size[1] > s.size[0]]
    others = [s for s in samples if s.size[1] <= s.size[0]]
    if min(len(portrait), len(others)) >= SPLIT_MIN_CROPS:
        a, b = _fit(others), _fit(portrait)
        assert a is not None and b is not None
        wa, wb = sum(s.weight for s in others), sum(s.weight for s in portrait)
        held = (wa * a[0] + wb * b[0]) / (wa + wb)
        if held > one[0] + SPLIT_GAIN:
            fit = (wa * a[1].fit + wb * b[1].fit) / (wa + wb)
            return replace(a[1], fit=fit, k=len(samples), portrait=b[1])
    return one[1]


def _fit(samples: Sequence[RuleSample]) -> tuple[float, FramingRule] | None:
    """The best single rule and its held-out (leave-one-out) mean IoU."""
    if not samples:
        return None
    subj = np.asarray([s.subject for s in samples], dtype=np.float64)
    sizes = np.asarray([s.size for s in samples], dtype=np.float64)
    crops = np.asarray([tuple(s.crop) for s in samples], dtype=np.float64)
    w = np.asarray([s.weight for s in samples], dtype=np.float64)
    w = w / w.sum()
    crop_aspect = (crops[:, 2] - crops[:, 0]) * sizes[:, 0] / ((crops[:, 3] - crops[:, 1]) * sizes[:, 1])

    # Model choice by leave-one-out: a free-form rule or a frame trimmer has more room to fit a few crops by
    # chance, so each option is judged on crops its fit did not see, then refitted on all of them.
    best: tuple[float, FramingRule] | None = None
    for ratio, follow in _ratio_options(samples, crop_aspect, w):
        aspects = None if ratio == "free" else np.asarray([rule_aspect(ratio, follow, s.size) for s in samples])
        for kind in ("subject", "frame"):
            grid = _grid(kind, ratio == "free")
            per = _sample_ious(kind, subj, sizes, aspects, crops, grid)  # k x grid points
            total = w @ per
            loo = _leave_one_out(per, w, total) if len(samples) > 1 else float(total.max())
            i = int(np.argmax(total))
            params = tuple(float(g.flat[i]) for g in grid)
            fine = _fine_grid(kind, ratio == "free", params)
            fine_total = w @ _sample_ious(kind, subj, sizes, aspects, crops, fine)
            j = int(np.argmax(fine_total))
            if fine_total[j] > total[i]:
                params, value = tuple(float(g.flat[j]) for g in fine), float(fine_total[j])
            else:
                value = float(total[i])
            sx, sy, ax, ay = params
            rule = FramingRule(kind, ratio, follow, sx, sy, ax, ay, fit=value, k=len(samples))
            loo -= FREE_FORM_PENALTY if ratio == "free" else 0.0
            if best is None or loo > best[0]:
                best = (loo, rule)
        if ratio != "free":
            # The generic framing in this ratio has nothing to fit: its mean IoU is already a held-out number.
            g = GENERIC_RULE
            per = _sample_ious("subject", subj, sizes, aspects, crops, (np.array(g.sx), np.array(g.sy), np.array(g.ax), np.array(g.ay)))
            value = float(w @ per[:, 0])
            if value > best[0]:
                best = (value, FramingRule("subject", ratio, follow, g.sx, g.sy, g.ax, g.ay, fit=value, k=len(samples)))
    return best


def _leave_one_out(per: np.ndarray, w: np.ndarray, total: np.ndarray) -> float:
    """Weighted mean IoU on each crop of the grid point fitted without it."""
    held = np.empty(len(per))
    for j in range(len(per)):
        held[j] = per[j, int(np.argmax(total - w[j] * per[j]))]
    return float(w @ held)


def _ratio_options(samples: Sequence[RuleSample], crop_aspect: np.ndarray, w: np.ndarray) -> list[tuple[str, bool]]:
    """The fixed ratios that are the nearest one for enough of the crops (jitter of a hand-drawn crop moves its
    aspect, so nearest rather than exact), as written or turned with the photo; and free-form."""
    options: list[tuple[str, bool]] = []
    columns: list[np.ndarray] = []
    seen: set[tuple[float, ...]] = set()
    for ratio in RULE_RATIOS:
        for follow in (True, False):
            aspects = np.asarray([rule_aspect(ratio, follow, s.size) for s in samples], dtype=np.float64)
            key = tuple(np.round(aspects, 4))
            if key in seen:  # 1:1, original, or only one orientation among the photos: same option
                continue
            seen.add(key)
            options.append((ratio, follow))
            columns.append(np.abs(np.log(crop_aspect / aspects)))
    dist = np.stack(columns, axis=1)  # k x options
    nearest = dist <= dist.min(axis=1, keepdims=True) + 1e-9
    share = w @ nearest
    out = [opt for opt, sh in zip(options, share, strict=True) if sh >= RATIO_SHARE]
    out.append(("free", True))
    return out


def _grid(kind: str, free: bool) -> tuple[np.ndarray, ...]:
    """Parameter grids (sx, sy, ax, ay), broadcast to one shape."""
    if kind == "subject" and not free:
        m, ax, ay = np.meshgrid(_MARGINS, _PLACES, _PLACES, indexing="ij")
        return m, m, ax, ay
    if kind == "subject":
        return tuple(np.meshgrid(_FREE_MARGINS, _FREE_MARGINS, _FREE_PLACES, _FREE_PLACES, indexing="ij"))
    if not free:
        s, ax, ay = np.meshgrid(_SCALES, _PLACES, _PLACES, indexing="ij")
        return s, s, ax, ay
    return tuple(np.meshgrid(_SCALES, _SCALES, _FREE_PLACES, _FREE_PLACES, indexing="ij"))


def _fine_grid(kind: str, free: bool, params: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """A grid of half the coarse steps around ``params``."""
    sx, sy, ax, ay = params
    if kind == "subject":
        step_s = math.log(3.6) / (9 if free else 13) / 2
        sxs, sys_ = sx * np.exp(step_s * np.arange(-2, 3)), sy * np.exp(step_s * np.arange(-2, 3))
    else:
        sxs, sys_ = np.clip(sx + 0.025 * np.arange(-2, 3), 0.3, 1.0), np.clip(sy + 0.025 * np.arange(-2, 3), 0.3, 1.0)
    step_p = 0.5 / (8 if free else 10) / 2
    axs = np.clip(ax + step_p * np.arange(-2, 3), 0.05, 0.95)
    ays = np.clip(ay + step_p * np.arange(-2, 3), 0.05, 0.95)
    if free:
        return tuple(np.meshgrid(sxs, sys_, axs, ays, indexing="ij"))
    s, a, b = np.meshgrid(sxs, axs, ays, indexing="ij")
    return s, s, a, b


def _sample_ious(
    kind: str,
    subj: np.ndarray,
    sizes: np.ndarray,
    aspects: np.ndarray | None,
    crops: np.ndarray,
    grid: tuple[np.ndarray, ...],
) -> np.ndarray:
    """k x P: IoU of each crop with the rule's box of its photo, for each of the P grid points."""
    out = np.empty((len(crops), grid[0].size))
    for i in range(len(crops)):
        a = None if aspects is None else aspects[i : i + 1]
        if kind == "subject":
            boxes = _subject_boxes(subj[i : i + 1], sizes[i : i + 1], a, *grid)
        else:
            boxes = _frame_boxes(sizes[i : i + 1], a, *grid)
        out[i] = np.broadcast_to(_iou(boxes, crops[i]), grid[0].shape).ravel()
    return out


def _subject_boxes(
    subj: np.ndarray,
    sizes: np.ndarray,
    aspect: np.ndarray | None,
    sx: Any,
    sy: Any,
    ax: Any,
    ay: Any,
) -> tuple[np.ndarray, ...]:
    """Boxes of a subject rule; ``subj``/``sizes``/``aspect`` hold one photo (length 1), parameters broadcast."""
    w, h = float(sizes[0, 0]), float(sizes[0, 1])
    x0, y0, x1, y1 = (float(v) for v in subj[0])
    sw, sh = max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)
    need_w = sw * sx / (2 * np.minimum(ax, 1 - ax))  # normalized
    need_h = sh * sy / (2 * np.minimum(ay, 1 - ay))
    if aspect is None:
        bw, bh = np.minimum(need_w, 1.0), np.minimum(need_h, 1.0)
    else:
        a = float(aspect[0])
        max_w, max_h = largest_box(a, (int(w), int(h)))
        bw_px = np.maximum(need_w * w, need_h * h * a)
        bw, bh = bw_px / w, bw_px / a / h
        too_big = (bw > max_w) | (bh > max_h)
        bw, bh = np.where(too_big, max_w, bw), np.where(too_big, max_h, bh)
    cx = (x0 + x1) / 2 - (ax - 0.5) * bw
    cy = (y0 + y1) / 2 - (ay - 0.5) * bh
    return _placed(cx, cy, bw, bh)


def _frame_boxes(
    sizes: np.ndarray, aspect: np.ndarray | None, sx: Any, sy: Any, ax: Any, ay: Any
) -> tuple[np.ndarray, ...]:
    if aspect is None:
        max_w, max_h = 1.0, 1.0
    else:
        max_w, max_h = largest_box(float(aspect[0]), (int(sizes[0, 0]), int(sizes[0, 1])))
    bw, bh = max_w * sx, max_h * sy
    cx = 0.5 + (ax - 0.5) * (1 - bw)
    cy = 0.5 + (ay - 0.5) * (1 - bh)
    return _placed(cx, cy, bw, bh)


def _placed(cx: Any, cy: Any, bw: Any, bh: Any) -> tuple[np.ndarray, ...]:
    bw, bh = np.asarray(bw, dtype=np.float64), np.asarray(bh, dtype=np.float64)
    cx = np.clip(cx, bw / 2, 1 - bw / 2)
    cy = np.clip(cy, bh / 2, 1 - bh / 2)
    return cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2


def _reshape(box: tuple[np.ndarray, ...], size: tuple[int, int], aspect: float) -> tuple[np.ndarray, ...]:
    """The box of pixel ``aspect`` with the same area and centre as ``box``, shrunk to fit the frame."""
    x0, y0, x1, y1 = (float(np.ravel(v)[0]) for v in box)
    w, h = size
    area = max((x1 - x0) * (y1 - y0), 1e-6)
    bw = math.sqrt(area * aspect * h / w)
    bh = area / bw
    max_w, max_h = largest_box(aspect, size)
    scale = min(1.0, max_w / bw, max_h / bh)
    return _placed(np.array([(x0 + x1) / 2]), np.array([(y0 + y1) / 2]), bw * scale, bh * scale)


def _iou(boxes: tuple[np.ndarray, ...], crop: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = boxes
    ix = np.clip(np.minimum(x1, crop[2]) - np.maximum(x0, crop[0]), 0, None)
    iy = np.clip(np.minimum(y1, crop[3]) - np.maximum(y0, crop[1]), 0, None)
    inter = ix * iy
    union = (x1 - x0) * (y1 - y0) + (crop[2] - crop[0]) * (crop[3] - crop[1]) - inter
    return inter / np.maximum(union, 1e-12)


def _frame_words(ax: float, ay: float) -> str:
    """Where a frame trimmer's crop sits in the frame."""
    parts = []
    if abs(ax - 0.5) >= 0.06:
        parts.append("towards the left" if ax < 0.5 else "towards the right")
    if abs(ay - 0.5) >= 0.06:
        parts.append("towards the top" if ay < 0.5 else "towards the bottom")
    return " and ".join(parts) if parts else "centred"


def _placement_words(ax: float, ay: float) -> str:
    def word(v: float, low: str, high: str) -> str:
        if abs(v - 0.5) < 0.06:
            return ""
        near_third = abs(v - 1 / 3) < 0.06 or abs(v - 2 / 3) < 0.06
        side = low if v < 0.5 else high
        return f"on the {side} third" if near_third else f"{side} of centre"

    parts = [p for p in (word(ax, "left", "right"), word(ay, "upper", "lower")) if p]
    return " and ".join(parts) if parts else "centred"
