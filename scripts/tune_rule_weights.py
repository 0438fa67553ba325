#!/usr/bin/env python3
"""How much the framing rule should count, and how hard the generic prior keeps the subject: the validation runs
behind ``network.RULE_WEIGHT``, ``PROFILE_RULE_WEIGHT``, ``GENERIC_RULE_WEIGHT``, ``SUBJECT_KEEP``,
``SUBJECT_KEEP_PENALTY`` (a ratio imposed) and ``SUBJECT_KEEP_PENALTY_FREE`` (free-form).

Runs on the *validation fold* of the training photos only (``prior_training.validation_fold``, with their out-of-fold
subject maps, as prior training sees them), never on the test split the README reports. Simulated users: 12 of the
DESIGN family and 12 of the broader family, seeds distinct from training and evaluation, and the 6 hand-made users
of ``personas.tuning_personas`` (habits unlike the DESIGN family's; the README's "users outside the DESIGN family"
stay unseen). Prints mean IoU for each weight tried, per group and over all users. About 11 minutes on 2 cores
with the feature cache warm.

    python scripts/tune_rule_weights.py [--users 24] [--part all|rules|keep]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from pic_plugin.core.geometry import FREE, contains_fraction, iou
from pic_plugin.model import network as M
from pic_plugin.model.finetune import UserExample, finetune
from pic_plugin.research import evaluation as ev
from pic_plugin.research.datasets import subject_photos
from pic_plugin.research.feature_store import FeatureStore
from pic_plugin.research.personas import broad_family, design_family, tuning_personas
from pic_plugin.research.prior_training import load_or_make_oof_maps, validation_fold


def _mean_iou(net, user, setting, photos, persona, held, crops) -> float:  # type: ignore[no-untyped-def]
    out = []
    for i in held:
        ratio = persona.requested_ratio(photos[i].size) if setting == "ratio" else FREE
        out.append(iou(ev.suggest_box(net, user, photos[i].analysis, ratio, {}), crops[i]))
    return float(np.mean(out))


def _subject_keep(net, photos, personas) -> None:  # type: ignore[no-untyped-def]
    """``SUBJECT_KEEP`` and the two penalties: the generic prior's IoU against every user and its subject
    retention (the crop keeps >= 95% of the annotated subject box), in both settings. Each row uses one penalty
    for both; the ``free`` column picks ``SUBJECT_KEEP_PENALTY_FREE``, the ``ratio`` column ``SUBJECT_KEEP_PENALTY``."""
    saved = (M.SUBJECT_KEEP, M.SUBJECT_KEEP_PENALTY, M.SUBJECT_KEEP_PENALTY_FREE)
    nobody = M.prior_user(net)
    print("SUBJECT_KEEP_PENALTY x shortfall below SUBJECT_KEEP (generic prior): mean IoU, subject retention")
    try:
        grid = ((0.97, 0.0), (0.95, 5.0), (0.97, 2.0), (0.97, 5.0), (0.97, 20.0), (0.97, 50.0), (0.99, 5.0), (0.99, 20.0))
        for keep, penalty in grid:
            M.SUBJECT_KEEP, M.SUBJECT_KEEP_PENALTY, M.SUBJECT_KEEP_PENALTY_FREE = keep, penalty, penalty
            line = []
            for setting in ("free", "ratio"):
                ious, kept = [], []
                for ep in photos:
                    boxes: dict[str, object] = {}
                    for persona in personas:
                        ratio = persona.requested_ratio(ep.size) if setting == "ratio" else FREE
                        if ratio.name not in boxes:
                            boxes[ratio.name] = ev.suggest_box(net, nobody, ep.analysis, ratio, {})
                        box = boxes[ratio.name]
                        ious.append(iou(box, persona.crop(ep.photo.subject_box, ep.size, ep.key)))
                        kept.append(contains_fraction(box, ep.photo.subject_box) >= ev.RETAIN)
                line.append(f"{setting} {np.mean(ious):.4f} / {100 * np.mean(kept):.1f}%")
            print(f"  keep {keep:.2f} penalty {penalty:4.1f}: " + ", ".join(line), flush=True)
    finally:
        M.SUBJECT_KEEP, M.SUBJECT_KEEP_PENALTY, M.SUBJECT_KEEP_PENALTY_FREE = saved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=24, help="simulated users (half DESIGN family, half broader)")
    ap.add_argument("--part", choices=("all", "rules", "keep"), default="all",
                    help="the rule weights, the generic prior's subject keeping, or both")
    args = ap.parse_args()
    store = FeatureStore()
    train = [p for p in subject_photos() if p.split == "train"]
    maps = load_or_make_oof_maps(train, store)
    photos = [
        ev.EvalPhoto(p, f"{p.image.name}|{p.mask.name}", replace(store.analysis(p.image), subject=maps[(str(p.image), False)]))
        for p in train
        if validation_fold(p)
    ]
    half = args.users // 2
    personas = design_family(half, seed=77, prefix="val") + broad_family(args.users - half, seed=78)
    unusual = {p.name for p in tuning_personas()}
    personas += tuning_personas()
    net, _ = M.load_prior()
    n_support = min(ev.SUPPORT_POOL, len(photos) // 2)
    print(f"{len(photos)} validation photos, {len(personas)} simulated users")
    if args.part in ("all", "keep"):
        _subject_keep(net, photos, personas)
    if args.part == "keep":
        return 0
    saved = (M.RULE_WEIGHT, M.PROFILE_RULE_WEIGHT, M.GENERIC_RULE_WEIGHT)
    crops_rule: dict[tuple[str, int, float], list[tuple[bool, float]]] = {}
    profile_rule: dict[tuple[str, float], list[float]] = {}
    generic_rule: dict[float, list[float]] = {}
    centre: list[float] = []
    try:
        for pi, persona in enumerate(personas):
            order = np.random.default_rng(5000 + pi).permutation(len(photos))
            pool, held = order[:n_support], [int(i) for i in order[n_support:]]
            crops = {int(i): persona.crop(photos[i].photo.subject_box, photos[i].size, photos[i].key) for i in order}

            def mean_iou(user: M.UserModel, setting: str, task=(persona, held, crops)) -> float:  # type: ignore[no-untyped-def]
                return _mean_iou(net, user, setting, photos, *task)

            for k in (5, 10, 50):
                user = finetune(net, [UserExample(photos[int(i)].analysis, crops[int(i)]) for i in pool[:k]])
                for weight in (0.0, 3.0, 10.0, 30.0):
                    M.RULE_WEIGHT = weight
                    for setting in ("free", "ratio"):
                        crops_rule.setdefault((setting, k, weight), []).append(
                            (persona.name in unusual, mean_iou(user, setting)))
            M.RULE_WEIGHT = saved[0]
            told = M.prior_user(net, persona.attributes())
            for weight in (0.0, 5.0, 7.5, 10.0):
                M.PROFILE_RULE_WEIGHT = weight
                for setting in ("free", "ratio"):
                    profile_rule.setdefault((setting, weight), []).append(mean_iou(told, setting))
            M.PROFILE_RULE_WEIGHT = saved[1]
            nobody = M.prior_user(net)
            for weight in (0.0, 2.0, 5.0, 10.0):
                M.GENERIC_RULE_WEIGHT = weight
                generic_rule.setdefault(weight, []).append(mean_iou(nobody, "ratio"))
            M.GENERIC_RULE_WEIGHT = saved[2]
            centre.append(float(np.mean([iou(ev.centre_crop(photos[i].size, persona.requested_ratio(photos[i].size)), crops[i]) for i in held])))
            print(f"  user {pi + 1}/{len(personas)}", flush=True)
    finally:
        M.RULE_WEIGHT, M.PROFILE_RULE_WEIGHT, M.GENERIC_RULE_WEIGHT = saved
    print("\nRULE_WEIGHT (rule fitted to k crops), mean IoU: families / hand-made unusual users / all")
    for key in sorted(crops_rule):
        values = crops_rule[key]
        family = [v for odd, v in values if not odd]
        odd = [v for is_odd, v in values if is_odd]
        print(f"  setting {key[0]:5s} k={key[1]:2d} weight {key[2]:4.1f}: {np.mean(family):.4f} / "
              f"{np.mean(odd) if odd else float('nan'):.4f} / {np.mean([v for _, v in values]):.4f}")
    for weight in sorted({key[2] for key in crops_rule}):
        every = [v for key, values in crops_rule.items() if key[2] == weight for _, v in values]
        print(f"  weight {weight:4.1f}, both settings and every k: {np.mean(every):.4f}")
    print("PROFILE_RULE_WEIGHT (prior + the user's profile attributes)")
    for key in sorted(profile_rule):
        print(f"  setting {key[0]:5s} weight {key[1]:4.1f}: {np.mean(profile_rule[key]):.4f}")
    print("GENERIC_RULE_WEIGHT (prior, nothing known, a fixed ratio asked)")
    for w, v in sorted(generic_rule.items()):
        print(f"  weight {w:4.1f}: {np.mean(v):.4f}")
    print(f"  centre crop of the ratio: {np.mean(centre):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
