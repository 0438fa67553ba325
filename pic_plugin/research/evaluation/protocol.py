"""How well pic predicts a photographer's crops: metrics, baselines and the protocol of DESIGN section 6.

Metrics against a reference crop: IoU, BDE (mean of the four normalized edge displacements), hit rate
(IoU >= 0.8: accepted as is); against the photo: subject retention (the crop keeps >= 95% of the annotated
subject box) and face cuts (a detected face partly inside the crop).

Baselines: centre crop of the requested ratio; smartcrop.py and libvips' attention crop (``thumbnail
--smartcrop attention``), both optional ``bench`` extras imported only here; the user's mean geometry (their most
used ratio + the average of their crop boxes). Methods of pic: the generic prior (k = 0) and the personalized
model fine-tuned on k of the user's crops.

Protocol (``run_protocol``): simulated users (``personas``) on the ``test`` split of the photos with human subject
masks. Per user, the test photos are shuffled with a fixed seed; the first ``SUPPORT_POOL`` are where the k
training crops come from (the first k of them, so supports are nested), the rest are held out and the same for
every k. Two settings: ``ratio`` (the user asks for their favourite ratio, as ``pic batch --ratio 4:5`` does;
every method gets the same ratio) and ``free`` (nothing is asked: pic must also learn the ratio habit; the
centre/smartcrop/libvips baselines still get the user's favourite ratio, an advantage they would not have).

``evaluate_user`` runs the same comparison on a real user's own crops from the catalog (held-out split).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pic_plugin.analysis import candidate_features as cf
from pic_plugin.analysis.composition import CompositionScorer, summarize_subject
from pic_plugin.analysis.features import ImageAnalysis
from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.geometry import (
    COMMON_RATIOS,
    FREE,
    ORIGINAL,
    Box,
    Ratio,
    bde,
    contains_fraction,
    iou,
    largest_box,
    parse_ratio,
)
from pic_plugin.imaging.decode import decode
from pic_plugin.imaging.faces import Face
from pic_plugin.model.finetune import FinetuneConfig, UserExample, finetune
from pic_plugin.model.network import PicNet, PicScorer, UserModel, prior_user
from pic_plugin.research.datasets import SubjectPhoto, stable_fold
from pic_plugin.research.feature_store import FeatureStore
from pic_plugin.research.personas import Persona, design_family

EVAL_SEED = 1000
K_VALUES = (0, 5, 10, 20, 50)
SUPPORT_POOL = 50
HIT_IOU = 0.8
RETAIN = 0.95
SETTINGS = ("ratio", "free")
BASELINES = ("centre", "smartcrop", "libvips", "user-mean")


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


# --- baselines ------------------------------------------------------------------------------------------------


def _aspect(size: tuple[int, int], ratio: Ratio) -> float:
    value = ratio.value_for(size)
    return value if value is not None else size[0] / size[1]


def centre_crop(size: tuple[int, int], ratio: Ratio) -> Box:
    """The largest box of the ratio, centred (free -> the full frame)."""
    bw, bh = largest_box(_aspect(size, ratio), size)
    return Box((1 - bw) / 2, (1 - bh) / 2, (1 + bw) / 2, (1 + bh) / 2)


def smartcrop_crop(path: Path, ratio: Ratio, size: tuple[int, int] | None = None) -> Box:
    """smartcrop.py's crop of the ratio (its default search: 90-100% of the largest box)."""
    import smartcrop  # bench extra: only the evaluation uses it
    from PIL import Image

    decoded = decode(path)
    img = Image.fromarray(decoded.pixels)
    w, h = img.size
    bw, bh = largest_box(_aspect(decoded.size, ratio), decoded.size)
    tw, th = max(1, round(bw * w)), max(1, round(bh * h))
    top = smartcrop.SmartCrop().crop(img, tw, th)["top_crop"]
    return Box(top["x"] / w, top["y"] / h, (top["x"] + top["width"]) / w, (top["y"] + top["height"]) / h).clamped()


def libvips_attention_crop(path: Path, ratio: Ratio, size: tuple[int, int] | None = None) -> Box:
    """libvips' attention crop (what ``vips thumbnail --smartcrop attention`` keeps) of the largest box of the ratio.

    libvips centres the crop on the point of highest attention and clamps it to the image.
    """
    import pyvips  # bench extra

    decoded = decode(path)
    h, w = decoded.pixels.shape[:2]
    img = pyvips.Image.new_from_memory(np.ascontiguousarray(decoded.pixels).tobytes(), w, h, 3, "uchar")
    bw, bh = largest_box(_aspect(decoded.size, ratio), decoded.size)
    tw, th = max(1, min(w, round(bw * w))), max(1, min(h, round(bh * h)))
    _, opts = img.smartcrop(tw, th, interesting="attention", attention_x=True, attention_y=True)
    left = min(max(opts["attention_x"] - tw // 2, 0), w - tw)
    top = min(max(opts["attention_y"] - th // 2, 0), h - th)
    return Box(left / w, top / h, (left + tw) / w, (top + th) / h)


_RATIO_NAMES = ("original", *COMMON_RATIOS)


def nearest_ratio(box: Box, size: tuple[int, int], tolerance: float = 0.04) -> str:
    """The common ratio (or 'original') a crop was made in, or 'free' when none is within ``tolerance``."""
    la = np.log(max(box.pixel_aspect(size), 1e-6))
    best, dist = "free", tolerance
    for name in _RATIO_NAMES:
        d = abs(la - np.log(_aspect(size, parse_ratio(name))))
        if d < dist - 1e-9:
            best, dist = name, d
    return best


def user_mean_geometry(
    support: Sequence[tuple[Box, tuple[int, int]]], size: tuple[int, int], ratio: Ratio | None
) -> Box:
    """Baseline: the user's average crop box, reshaped to ``ratio`` (or to their most used ratio when None)."""
    if not support:
        return centre_crop(size, ratio or ORIGINAL)
    boxes = np.asarray([b for b, _ in support], dtype=float)
    mean = boxes.mean(axis=0)
    if ratio is None:
        names = Counter(nearest_ratio(b, s) for b, s in support)
        name = names.most_common(1)[0][0]
        ratio = FREE if name == "free" else parse_ratio(name)
    if ratio.is_free:
        return Box(*map(float, mean))
    aspect = _aspect(size, ratio)
    area = max((mean[2] - mean[0]) * (mean[3] - mean[1]), 1e-4)
    w_px, h_px = size
    bw = np.sqrt(area * aspect * h_px / w_px)  # normalized width with bw * W / (bh * H) = aspect, bw * bh = area
    bh = area / bw
    max_w, max_h = largest_box(aspect, size)
    scale = min(1.0, max_w / bw, max_h / bh)
    bw, bh = bw * scale, bh * scale
    cx = min(max((mean[0] + mean[2]) / 2, bw / 2), 1 - bw / 2)
    cy = min(max((mean[1] + mean[3]) / 2, bh / 2), 1 - bh / 2)
    return Box(cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2).clamped()


class BaselineCache:
    """smartcrop and libvips results per (photo, ratio): the protocol asks for the same ones for many users."""

    def __init__(self) -> None:
        self.crops: dict[tuple[str, str, str], Box] = {}
        self.seconds: dict[str, float] = {"smartcrop": 0.0, "libvips": 0.0}
        self.calls: dict[str, int] = {"smartcrop": 0, "libvips": 0}

    def get(self, method: str, path: Path, size: tuple[int, int], ratio: Ratio) -> Box:
        key = (method, str(path), ratio.name)
        if key not in self.crops:
            t0 = time.perf_counter()
            fn = smartcrop_crop if method == "smartcrop" else libvips_attention_crop
            self.crops[key] = fn(path, ratio, size)
            self.seconds[method] += time.perf_counter() - t0
            self.calls[method] += 1
        return self.crops[key]


def baselines_available() -> dict[str, bool]:
    out = {}
    for name, module in (("smartcrop", "smartcrop"), ("libvips", "pyvips")):
        try:
            __import__(module)
            out[name] = True
        except (ImportError, OSError):
            out[name] = False
    return out


# --- the protocol ---------------------------------------------------------------------------------------------


@dataclass
class EvalPhoto:
    photo: SubjectPhoto
    key: str
    analysis: ImageAnalysis

    @property
    def size(self) -> tuple[int, int]:
        return self.analysis.size


@dataclass
class ProtocolResult:
    personas: list[str]
    photos: int
    queries_per_user: int
    tables: dict[str, dict[str, dict[int, dict[str, float]]]]  # setting -> method -> k -> metrics
    per_user: dict[str, dict[str, dict[int, float]]]  # setting -> persona -> k -> personalized mean IoU
    #: setting -> persona -> k -> the better of the user's two habit baselines (user-mean geometry, centre crop)
    per_user_baselines: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)  # agreement between personas, their own retention
    timings: dict[str, float] = field(default_factory=dict)


class CachedScorer(PicScorer):
    """PicScorer that remembers candidate features per (image, boxes): many users score the same photos."""

    def __init__(self, net: PicNet, user: UserModel, cache: dict, version: str = "pic") -> None:
        super().__init__(net, user, version)
        self.cache = cache

    def features(self, analysis: ImageAnalysis, boxes: np.ndarray) -> cf.CandidateFeatures:
        key = (id(analysis), boxes.shape[0], hash(boxes.tobytes()))
        feats = self.cache.get(key)
        if feats is None:
            feats = cf.compute(self.context(analysis), boxes)
            if boxes.shape[0] > 500:  # the candidate pools repeat across users; refinement boxes do not
                self.cache[key] = feats
        return feats


def eval_photos(photos: Sequence[SubjectPhoto], store: FeatureStore) -> list[EvalPhoto]:
    return [EvalPhoto(p, f"{p.image.name}|{p.mask.name}", store.analysis(p.image)) for p in photos]


def run_protocol(
    net: PicNet,
    photos: Sequence[EvalPhoto],
    personas: Sequence[Persona] | None = None,
    ks: Sequence[int] = K_VALUES,
    settings: Sequence[str] = SETTINGS,
    baselines: Sequence[str] = BASELINES,
    finetune_config: FinetuneConfig | None = None,
    attributes_row: bool = True,
    log: Callable[[str], None] = lambda s: None,
) -> ProtocolResult:
    """DESIGN section 6 on ``photos`` (use the test split) for simulated users ``personas``."""
    personas = list(personas) if personas is not None else design_family(24, seed=EVAL_SEED, prefix="eval")
    available = baselines_available()
    baselines = [b for b in baselines if b in ("centre", "user-mean") or available.get(b)]
    bcache = BaselineCache()
    methods = tuple(METHOD_LABELS)  # every method of the report, in its order
    composition = CompositionScorer()
    tallies: dict[str, dict[str, dict[int, Tally]]] = {s: {m: {} for m in methods} for s in settings}
    iou_sums: dict[str, dict[str, dict[int, float]]] = {s: {p.name: {} for p in personas} for s in settings}
    habit_sums: dict[str, dict[str, dict[int, list[float]]]] = {s: {p.name: {} for p in personas} for s in settings}
    t_finetune: list[float] = []
    t0 = time.time()
    n_support = min(SUPPORT_POOL, len(photos) // 2)
    prior_model = prior_user(net)

    # Every user's split, crops and fine-tuned models first; then photo by photo, so that each photo's candidate
    # features are computed once for all users and dropped afterwards.
    plans = []
    for pi, persona in enumerate(personas):
        order = np.random.default_rng(EVAL_SEED + pi).permutation(len(photos))
        pool, held = order[:n_support], order[n_support:]
        crops = {int(i): persona.crop(photos[i].photo.subject_box, photos[i].size, photos[i].key) for i in order}
        users: dict[int, UserModel] = {}
        for k in ks:
            if k:
                examples = [UserExample(photos[int(i)].analysis, crops[int(i)]) for i in pool[:k]]
                t1 = time.perf_counter()
                users[k] = finetune(net, examples, config=finetune_config)
                t_finetune.append(time.perf_counter() - t1)
        support = {k: [(crops[int(j)], photos[int(j)].size) for j in pool[:k]] for k in ks if k}
        attr_user = prior_user(net, persona.attributes()) if attributes_row else None
        plans.append((persona, set(int(i) for i in held), crops, users, support, attr_user))
    log(f"fine-tuned {len(t_finetune)} user models ({time.time() - t0:.0f}s)")

    for i, ep in enumerate(photos):
        cache: dict = {}
        size, subject, faces = ep.size, ep.photo.subject_box, ep.analysis.faces
        prior_crops: dict[tuple[str, str], Box] = {}
        composition_crops: dict[tuple[str, str], Box] = {}
        predicted_subject = Box(*summarize_subject(ep.analysis).box)
        for persona, held, crops, users, support, attr_user in plans:
            if i not in held:
                continue
            ref = crops[i]
            wanted = persona.requested_ratio(size)
            for setting in settings:
                t = tallies[setting]
                ratio = wanted if setting == "ratio" else FREE
                # Baselines that need a ratio get the user's favourite in both settings.
                fixed: dict[str, Box] = {"centre": centre_crop(size, wanted)}
                for b in ("smartcrop", "libvips"):
                    if b in baselines:
                        fixed[b] = bcache.get(b, ep.photo.image, size, wanted)
                if (setting, ratio.name) not in prior_crops:
                    prior_crops[(setting, ratio.name)] = suggest_box(net, prior_model, ep.analysis, ratio, cache)
                prior_box = prior_crops[(setting, ratio.name)]
                if (setting, ratio.name) not in composition_crops:  # the explicit baseline, given what pic is given
                    composition_crops[(setting, ratio.name)] = suggest(ep.analysis, composition, ratio, top_k=1).crop
                fixed["composition"] = composition_crops[(setting, ratio.name)]
                mine = iou_sums[setting][persona.name]
                # Reference, not a method: the user's exact rule (no jitter, always the favourite ratio) applied to
                # the subject as pic's subject map sees it. How far knowing the user perfectly gets without S.
                exact = dataclasses.replace(persona, jitter=0.0, habit=1.0).crop(predicted_subject, size, ep.key)
                t["oracle-rule"].setdefault(0, Tally()).add(exact, ref, subject, faces)
                for k in ks:
                    for b, box in fixed.items():
                        t[b].setdefault(k, Tally()).add(box, ref, subject, faces)
                    if k == 0:
                        t["pic"].setdefault(0, Tally()).add(prior_box, ref, subject, faces)
                        t["prior"].setdefault(0, Tally()).add(prior_box, ref, subject, faces)
                        mine[0] = mine.get(0, 0.0) + iou(prior_box, ref)
                        if attr_user is not None:
                            box = suggest_box(net, attr_user, ep.analysis, ratio, cache)
                            t["prior+attributes"].setdefault(0, Tally()).add(box, ref, subject, faces)
                        continue
                    um = user_mean_geometry(support[k], size, ratio if setting == "ratio" else None)
                    t["user-mean"].setdefault(k, Tally()).add(um, ref, subject, faces)
                    sums = habit_sums[setting][persona.name].setdefault(k, [0.0, 0.0])
                    sums[0] += iou(um, ref)
                    sums[1] += iou(fixed["centre"], ref)
                    rule = users[k].rule
                    if rule is not None:  # the fitted framing rule alone, without the network
                        rule_box = rule.box(predicted_subject, size, ratio)
                        t["rule"].setdefault(k, Tally()).add(rule_box, ref, subject, faces)
                    box = suggest_box(net, users[k], ep.analysis, ratio, cache)
                    t["pic"].setdefault(k, Tally()).add(box, ref, subject, faces)
                    mine[k] = mine.get(k, 0.0) + iou(box, ref)
        if (i + 1) % 20 == 0:
            log(f"{i + 1}/{len(photos)} photos ({time.time() - t0:.0f}s)")
    per_user = {
        s: {name: {k: v / max(1, len(photos) - n_support) for k, v in by_k.items()} for name, by_k in users_.items()}
        for s, users_ in iou_sums.items()
    }
    n_held = max(1, len(photos) - n_support)
    per_user_baselines = {
        s: {name: {k: max(v) / n_held for k, v in by_k.items()} for name, by_k in users_.items()}
        for s, users_ in habit_sums.items()
    }
    tables = {
        s: {m: {k: tl.summary() for k, tl in sorted(by_k.items()) if tl.n} for m, by_k in ms.items()}
        for s, ms in tallies.items()
    }
    tables = {s: {m: v for m, v in ms.items() if v} for s, ms in tables.items()}
    timings = {
        "finetune_mean_s": float(np.mean(t_finetune)) if t_finetune else 0.0,
        "finetune_max_s": float(np.max(t_finetune)) if t_finetune else 0.0,
        "total_s": time.time() - t0,
        **{f"{m}_s_per_call": bcache.seconds[m] / max(bcache.calls[m], 1) for m in bcache.seconds},
    }
    return ProtocolResult(
        personas=[p.name for p in personas],
        photos=len(photos),
        queries_per_user=len(photos) - n_support,
        tables=tables,
        per_user=per_user,
        per_user_baselines=per_user_baselines,
        reference=persona_reference(personas, photos),
        timings=timings,
    )


def suggest_box(net: PicNet, user: UserModel, analysis: ImageAnalysis, ratio: Ratio, cache: dict) -> Box:
    return suggest(analysis, CachedScorer(net, user, cache), ratio, top_k=1).crop


def persona_reference(personas: Sequence[Persona], photos: Sequence[EvalPhoto]) -> dict[str, float]:
    """How much the simulated users agree with each other, and how often their own crops keep the subject."""
    from itertools import combinations

    agree, kept = [], []
    for ep in photos:
        crops = [p.crop(ep.photo.subject_box, ep.size, ep.key) for p in personas]
        agree.extend(iou(a, b) for a, b in combinations(crops, 2))
        kept.extend(contains_fraction(c, ep.photo.subject_box) >= RETAIN for c in crops)
    return {"pairwise_iou": float(np.mean(agree)) if agree else float("nan"), "own_retention": float(np.mean(kept))}


# --- a real user's own crops ----------------------------------------------------------------------------------


@dataclass
class UserCrop:
    """One of a user's crops with the photo's features (e.g. from the catalog)."""

    key: str  # content key: the held-out split is fixed per photo
    analysis: ImageAnalysis
    crop: Box
    weight: float = 1.0


def heldout_split(crops: Sequence[UserCrop], heldout_share: float = 0.3) -> tuple[list[UserCrop], list[UserCrop]]:
    """A fixed split of a user's crops by photo content: (training crops, held-out crops)."""
    folds = 10
    cut = max(1, round(heldout_share * folds))
    train = [c for c in crops if stable_fold("heldout:" + c.key, folds) >= cut]
    held = [c for c in crops if stable_fold("heldout:" + c.key, folds) < cut]
    return train, held


def evaluate_user(
    net: PicNet, crops: Sequence[UserCrop], attributes: dict[str, Any] | None = None, heldout_share: float = 0.3
) -> dict[str, Any]:
    """Fine-tune on the user's training crops, measure on their held-out crops (free setting).

    Only crops the user made or edited (weight >= 1) are held out: weaker ones (pic's own suggestions left in
    place, approximate crops, suggestions accepted on the review page) would measure pic against itself, so they
    only ever train."""
    own = [c for c in crops if c.weight >= 1.0]
    weak = [c for c in crops if 0 < c.weight < 1.0]
    train, held = heldout_split(own, heldout_share)
    train = [*train, *weak]
    if not held or not train:
        raise ValueError(
            f"need crops you made on both sides of the held-out split (have {len(train)} + {len(held)}; "
            f"{len(weak)} of pic's own or approximate crops only train)"
        )
    t0 = time.perf_counter()
    user = finetune(net, [UserExample(c.analysis, c.crop, c.weight) for c in train], attributes)
    seconds = time.perf_counter() - t0
    prior = prior_user(net, attributes)
    cache: dict = {}
    support = [(c.crop, c.analysis.size) for c in train]
    names = Counter(nearest_ratio(b, s) for b, s in support)
    fav = names.most_common(1)[0][0]
    fav_ratio = ORIGINAL if fav == "free" else parse_ratio(fav)
    tallies = {m: Tally() for m in ("centre", "user-mean", "prior", "pic")}
    for c in held:
        size = c.analysis.size
        faces = c.analysis.faces
        tallies["centre"].add(centre_crop(size, fav_ratio), c.crop, None, faces)
        tallies["user-mean"].add(user_mean_geometry(support, size, None), c.crop, None, faces)
        tallies["prior"].add(suggest_box(net, prior, c.analysis, FREE, cache), c.crop, None, faces)
        tallies["pic"].add(suggest_box(net, user, c.analysis, FREE, cache), c.crop, None, faces)
    return {
        "train_crops": len(train),
        "heldout_crops": len(held),
        "finetune_s": round(seconds, 3),
        "favourite_ratio": fav,
        "methods": {m: t.summary() for m, t in tallies.items()},
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


# --- tables ---------------------------------------------------------------------------------------------------

METHOD_LABELS = {
    "centre": "centre crop (favourite ratio)",
    "smartcrop": "smartcrop.py (favourite ratio)",
    "libvips": "libvips attention (favourite ratio)",
    "user-mean": "user-mean geometry",
    "composition": "composition scorer (pic's explicit baseline)",
    "prior": "generic prior",
    "prior+attributes": "prior + profile attributes",
    "rule": "the user's framing rule fitted by pic, alone (no network)",
    "pic": "pic (k=0: prior; k>0: personalized)",
    "oracle-rule": "reference: the user's exact rule on pic's predicted subject",
}


def format_table(table: dict[str, dict[int, dict[str, float]]], ks: Sequence[int], metric: str = "iou") -> str:
    """A markdown table: one row per method, one column per k."""
    head = "| method | " + " | ".join(f"k={k}" for k in ks) + " |"
    lines = [head, "|---|" + "---:|" * len(ks)]
    for method, by_k in table.items():
        cells = []
        for k in ks:
            m = by_k.get(k)
            cells.append("" if m is None else f"{m[metric]:.3f}")
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_metrics(table: dict[str, dict[int, dict[str, float]]], k: int) -> str:
    """All metrics of every method at one k (k = 0 rows fall back to their k = 0 entry)."""
    lines = [
        "| method | mean IoU | BDE | hit rate (IoU>=0.8) | subject retention | face cuts / photos with faces |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, by_k in table.items():
        m = by_k.get(k) or by_k.get(0)
        if m is None:
            continue
        lines.append(
            f"| {METHOD_LABELS.get(method, method)} | {m['iou']:.3f} | {m['bde']:.3f} | {m['hit']:.3f} | "
            f"{m['retention']:.3f} | {m['face_cuts']} / {m['face_photos']} |"
        )
    return "\n".join(lines)
