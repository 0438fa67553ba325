"""The README's evaluation tables in one call (``scripts/evaluate.py``, ``pic eval``).

Runs, on the ``test`` split of the photos with human subject masks:
1. the protocol of DESIGN section 6 for simulated users of the DESIGN family (``ratio`` and ``free`` settings);
2. the same for hand-made users outside that family (``personas.check_personas``: never trained on);
3. GAIC's Acc K/N and SRCC of the scorers on the 2 GAICD photos with 87 / 90 human-scored crops;
4. timings: fine-tuning k = 50 crops, and scoring (candidates -> suggestion) per photo, pic vs composition.
Everything printed is measured in this run.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pic_plugin.analysis.composition import CompositionScorer, summarize_subject
from pic_plugin.analysis.suggest import suggest
from pic_plugin.core.geometry import FREE, Box, iou, parse_ratio
from pic_plugin.model.finetune import UserExample, finetune, torch_threads
from pic_plugin.model.network import PicScorer, load_prior, prior_user
from pic_plugin.research import evaluation as ev
from pic_plugin.research.datasets import load_gaicd, shared_data_dir, subject_photos
from pic_plugin.research.feature_store import FeatureStore
from pic_plugin.research.personas import FLMS_PAIRWISE_IOU, broad_family, check_personas, design_family


def protocol_report(
    n_users: int = 24,
    quick: bool = False,
    cache: Path | None = None,
    log: Callable[[str], None] = print,
    threads: int = 1,
) -> tuple[str, dict[str, Any]]:
    """Run everything and return (markdown for the README, the raw numbers). One torch thread by default: the
    networks are small, and timings are then comparable between a quiet and a busy machine."""
    with torch_threads(threads):
        return _report(n_users, quick, cache, log)


def _report(n_users: int, quick: bool, cache: Path | None, log: Callable[[str], None]) -> tuple[str, dict[str, Any]]:
    t0 = time.time()
    root = shared_data_dir()
    if root is None:
        raise FileNotFoundError("the evaluation needs ../shared/data (or $PIC_SHARED_DATA)")
    net, meta = load_prior()
    store = FeatureStore(cache)
    photos = ev.eval_photos([p for p in subject_photos() if p.split == "test"], store)
    ks = (0, 10) if quick else ev.K_VALUES
    baselines = ("centre", "user-mean") if quick else ev.BASELINES
    personas = design_family(n_users, seed=ev.EVAL_SEED, prefix="eval")
    main = ev.run_protocol(net, photos, personas, ks=ks, baselines=baselines, log=log)
    checks = ev.run_protocol(
        net,
        photos,
        check_personas(),
        ks=HABIT_KS if not quick else (0, 10),
        baselines=("centre", "user-mean"),
        attributes_row=False,
        log=log,
    )
    # The broader family the prior trains on, with users of its own (a seed training never uses).
    broad = ev.run_protocol(
        net,
        photos,
        broad_family(n_users, seed=ev.EVAL_SEED + 1),
        ks=HABIT_KS if not quick else (0, 10),
        baselines=("centre", "user-mean"),
        attributes_row=False,
        log=log,
    )
    gaicd = gaicd_report(store, net)
    subject_iou = float(np.mean([iou(Box(*summarize_subject(p.analysis).box), p.photo.subject_box) for p in photos]))
    timing = timing_report(net, photos)
    data = {
        "prior_version": meta.get("version"),
        "protocol": _jsonable(main),
        "check_personas": _jsonable(checks),
        "broad_family": _jsonable(broad),
        "gaicd": gaicd,
        "subject_box_iou": subject_iou,
        "timing": timing,
        "seconds": round(time.time() - t0, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)",
    }
    return format_report(data, ks), data


def _jsonable(r: ev.ProtocolResult) -> dict[str, Any]:
    return {
        "personas": r.personas,
        "photos": r.photos,
        "queries_per_user": r.queries_per_user,
        "tables": {s: {m: {str(k): v for k, v in by_k.items()} for m, by_k in t.items()} for s, t in r.tables.items()},
        "per_user": {s: {u: {str(k): v for k, v in d.items()} for u, d in t.items()} for s, t in r.per_user.items()},
        "per_user_baselines": {
            s: {u: {str(k): v for k, v in d.items()} for u, d in t.items()} for s, t in r.per_user_baselines.items()
        },
        "reference": r.reference,
        "timings": r.timings,
    }


def gaicd_report(store: FeatureStore, net: Any) -> dict[str, dict[str, float]]:
    """Acc K/N and SRCC of the composition scorer and the pic prior on the GAICD photos present."""
    root = shared_data_dir()
    out: dict[str, dict[str, float]] = {}
    if root is None:
        return out
    sets = [s for s in load_gaicd(root / "crop-annotations" / "GAICD").values() if s.image is not None]
    scorers = {"composition": CompositionScorer(), "pic prior": PicScorer(net, prior_user(net))}
    for name, scorer in scorers.items():
        rows = []
        for item in sets:
            analysis = store.analysis(item.image)  # type: ignore[arg-type]
            boxes = np.asarray(item.normalized(analysis.size), dtype=np.float32)
            rows.append(ev.gaic_metrics(scorer.score(analysis, boxes), np.asarray(item.scores)))
        out[name] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}
        out[name]["images"] = len(rows)
    return out


def timing_report(net: Any, photos: list[ev.EvalPhoto]) -> dict[str, float]:
    """Seconds for fine-tuning on 50 crops (cached features) and for one suggestion per photo."""
    persona = design_family(1, seed=ev.EVAL_SEED + 7, prefix="timing")[0]
    examples = [UserExample(p.analysis, persona.crop(p.photo.subject_box, p.size, p.key)) for p in photos[:50]]
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        user = finetune(net, examples)
        runs.append(time.perf_counter() - t)
    out = {"finetune_k50_s_median": float(np.median(runs)), "finetune_k50_s_max": float(np.max(runs))}
    sample = photos[:40]
    for name, scorer in (("pic", PicScorer(net, user)), ("composition", CompositionScorer())):
        for ratio_name in ("free", "4:5"):
            ratio = FREE if ratio_name == "free" else parse_ratio(ratio_name)
            t = time.perf_counter()
            for p in sample:
                suggest(p.analysis, scorer, ratio, top_k=3)
            out[f"suggest_{name}_{ratio_name}_ms"] = 1000 * (time.perf_counter() - t) / len(sample)
    return out


METHOD_ORDER = tuple(ev.METHOD_LABELS)
#: The k of the "never worse than the user's own habit" check (DESIGN's k >= 5).
HABIT_KS = (0, 5, 10, 20, 50)


def habit_table(families: dict[str, dict[str, Any]]) -> list[str]:
    """pic against the user's own habit (their mean crop geometry, the centre crop of their favourite ratio) for
    every family and k >= 5: the margin over the better of the two, and how many users fall below it."""
    lines = [
        "**Never worse than the user's own habit**: personalized pic minus the better of user-mean geometry and the "
        "centre crop at the user's favourite ratio (mean IoU over the family's users; in brackets, users for whom pic "
        "is below that better baseline by more than 0.01)",
        "",
    ]
    ks = sorted({int(k) for fam in families.values() for k in fam["tables"]["free"].get("pic", {})} - {0})
    lines += ["| family | setting | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|---|" + "---:|" * len(ks)]
    for name, fam in families.items():
        for setting in ("free", "ratio"):
            tab = fam["tables"][setting]
            cells = []
            for k in ks:
                pic = tab.get("pic", {}).get(str(k))
                um, ce = tab.get("user-mean", {}).get(str(k)), tab.get("centre", {}).get(str(k))
                if pic is None or um is None or ce is None:
                    cells.append("")
                    continue
                margin = pic["iou"] - max(um["iou"], ce["iou"])
                below = _users_below(fam, setting, k)
                cells.append(f"{margin:+.3f} ({below})")
            lines.append(f"| {name} | {setting} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _users_below(fam: dict[str, Any], setting: str, k: int) -> str:
    """Users whose personalized IoU is below their own better baseline by > 0.01 (needs per-user baselines)."""
    per = fam.get("per_user_baselines", {}).get(setting)
    if not per:
        return "-"
    n = 0
    for user, by_k in per.items():
        pic = fam["per_user"][setting].get(user, {}).get(str(k))
        base = by_k.get(str(k))
        if pic is not None and base is not None and pic < base - 0.01:
            n += 1
    return f"{n}/{len(per)}"


def format_report(data: dict[str, Any], ks: tuple[int, ...]) -> str:
    p = data["protocol"]
    ref = p["reference"]
    lines = [
        f"Prior {data['prior_version']}; {len(p['personas'])} simulated users (DESIGN family, seed "
        f"{ev.EVAL_SEED}) x {p['photos']} test photos; per user {p['queries_per_user']} held-out photos, "
        f"the same for every k. Simulated users agree with each other at mean pairwise IoU "
        f"{ref['pairwise_iou']:.3f} (FLMS workers: {FLMS_PAIRWISE_IOU}); their own crops keep the annotated "
        f"subject in {100 * ref['own_retention']:.0f}% of photos. pic's own subject estimate (its subject map joined "
        f"with the detector's main object) has mean IoU {data['subject_box_iou']:.3f} with the annotated subject box on these photos.",
        "",
    ]
    for setting, title in (
        ("ratio", "Setting `ratio`: the user asks for their favourite ratio (every method gets it)"),
        ("free", "Setting `free`: no ratio asked; pic must also learn the ratio habit (baselines still get it)"),
    ):
        table = {m: {int(k): v for k, v in p["tables"][setting].get(m, {}).items()} for m in METHOD_ORDER}
        table = {m: v for m, v in table.items() if v}
        lines += [f"**{title}** — mean IoU", "", ev.format_table(table, ks), ""]
        k_detail = 10 if 10 in ks else ks[-1]
        lines += [f"All metrics at k={k_detail} (k=0 rows: the prior)", "", ev.format_metrics(table, k_detail), ""]
        gains = _gains(table, ks)
        if gains:
            lines += [gains, ""]
    lines += habit_table(
        {"DESIGN": data["protocol"], "broad": data["broad_family"], "outside (hand-made)": data["check_personas"]}
    )
    c = data["check_personas"]
    cks = sorted({int(k) for t in c["per_user"]["free"].values() for k in t} - {0})
    lines += ["**Users outside the DESIGN family** (never trained on), mean IoU per user, setting `free` / `ratio`", ""]
    lines += ["| user | prior (k=0) | " + " | ".join(f"k={k}" for k in cks) + " |", "|---|" + "---:|" * (len(cks) + 1)]
    for name in c["personas"]:
        cells = []
        prior_free = _user_prior(c, "free", name)
        prior_ratio = _user_prior(c, "ratio", name)
        cells.append(f"{prior_free:.3f} / {prior_ratio:.3f}")
        for k in cks:
            cells.append(f"{c['per_user']['free'][name][str(k)]:.3f} / {c['per_user']['ratio'][name][str(k)]:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    if data["gaicd"]:
        lines += [
            "**GAICD** (the 2 photos with 87 / 90 human-scored crops)",
            "",
            "| scorer | Acc1/5 | Acc4/5 | Acc1/10 | Acc4/10 | SRCC |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, m in data["gaicd"].items():
            if "srcc" in m:
                lines.append(
                    f"| {name} | {m['acc1/5']:.2f} | {m['acc4/5']:.2f} | {m['acc1/10']:.2f} | "
                    f"{m['acc4/10']:.2f} | {m['srcc']:.3f} |"
                )
        lines.append("")
    t = data["timing"]
    lines += [
        f"**Timing** ({data['machine']}): fine-tuning on k=50 crops with cached features "
        f"{t['finetune_k50_s_median']:.2f} s (median of 3, max {t['finetune_k50_s_max']:.2f} s); one suggestion "
        f"(candidates, scoring, refinement, top-3) from cached features: pic {t['suggest_pic_free_ms']:.0f} ms free / "
        f"{t['suggest_pic_4:5_ms']:.0f} ms at 4:5, composition {t['suggest_composition_free_ms']:.0f} / "
        f"{t['suggest_composition_4:5_ms']:.0f} ms. Protocol fine-tunes: mean "
        f"{p['timings']['finetune_mean_s']:.2f} s, max {p['timings']['finetune_max_s']:.2f} s.",
        f"Whole report: {data['seconds']:.0f} s.",
    ]
    return "\n".join(lines)


def _user_prior(c: dict[str, Any], setting: str, name: str) -> float:
    return float(c["per_user"][setting].get(name, {}).get("0", float("nan")))


def _gains(table: dict[str, dict[int, dict[str, float]]], ks: tuple[int, ...]) -> str:
    pic = table.get("pic", {})
    if 0 not in pic:
        return ""
    base = pic[0]["iou"]
    parts = [f"k={k}: {pic[k]['iou'] - base:+.3f}" for k in ks if k and k in pic]
    um = table.get("user-mean", {})
    vs = [f"k={k}: {pic[k]['iou'] - um[k]['iou']:+.3f}" for k in ks if k and k in pic and k in um]
    return f"Personalized minus generic prior: {', '.join(parts)}. Minus user-mean geometry: {', '.join(vs)}."
