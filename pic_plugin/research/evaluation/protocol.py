"""How well pic predicts a photographer's crops: the protocol of DESIGN section 6 (metrics, baselines, tables and
a real user's own crops are the sibling modules).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pic_plugin.analysis import candidate_features as cf
from pic_plugin.analysis.composition import CompositionScorer, summarize_subject
from pic_plugin.analysis.features import ImageAnalysis
from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.geometry import (
    FREE,
    Box,
    Ratio,
    contains_fraction,
    iou,
)
from pic_plugin.model.finetune import FinetuneConfig, UserExample, finetune
from pic_plugin.model.network import PicNet, PicScorer, UserModel, prior_user
from pic_plugin.research.datasets import SubjectPhoto
from pic_plugin.research.evaluation.baselines import (
    BASELINES,
    BaselineCache,
    baselines_available,
    centre_crop,
    user_mean_geometry,
)
from pic_plugin.research.evaluation.metrics import RETAIN, Tally
from pic_plugin.research.evaluation.tables import METHOD_LABELS
from pic_plugin.research.feature_store import FeatureStore
from pic_plugin.research.personas import Persona, design_family

EVAL_SEED = 1000
K_VALUES = (0, 5, 10, 20, 50)
SUPPORT_POOL = 50
SETTINGS = ("ratio", "free")



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


