#!/usr/bin/env python3
"""Choose how the subject map, the faces and the detector's main object join into one box, leaving one source out.

Reads the out-of-fold results of ``scripts/measure_subject_loso.py`` (every photo's map from the head that never
saw its source, plus its faces and detections) and searches ``analysis.subject.SubjectRule`` (the map's floor and
tail, the main object's score, its fill, the blend between the joined box and the object's). For each source S the
rule is chosen on the other sources (the mean of their per-source means, so SOD's 300 masks do not outvote the
others) and measured on S: that is the generalization figure. The rule to ship is the one chosen on all sources.

    python scripts/choose_subject_fusion.py [--json build/subject-loso.json] [--recipe human+teacher]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from pic_plugin.analysis.features import Detection, ImageAnalysis  # noqa: E402
from pic_plugin.analysis.subject import SUBJECT_RULE, SubjectRule, summarize_subject  # noqa: E402
from pic_plugin.core.geometry import Box, iou  # noqa: E402
from pic_plugin.imaging.faces import Face  # noqa: E402

FLOORS = (0.1, 0.2, 0.3, 0.5)
TAILS = (0.005, 0.01, 0.02, 0.04)
SCORES = (0.3, 0.4, 0.5, 0.6)
FILLS = (0.0, 0.5)
BLENDS = (0.0, 0.25, 0.5, 0.75, 1.0)


def analyses(rows: list[dict[str, Any]], maps: Any) -> list[ImageAnalysis]:
    out = []
    for i, r in enumerate(rows):
        subject = maps[f"map_{i}"]
        faces = [Face(Box(*f["box"]), f["score"]) for f in r["faces"]]
        objects = [Detection(Box(*o["box"]), o["score"], o["label"]) for o in r["objects"]]
        out.append(ImageAnalysis((1, 1), np.zeros((1, 1, 1), np.float16), subject, faces, objects))
    return out


def per_source(rows: list[dict[str, Any]], ious: list[float]) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for r, v in zip(rows, ious, strict=True):
        by.setdefault(r["source"], []).append(v)
    return {s: statistics.fmean(v) for s, v in sorted(by.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=REPO / "build" / "subject-loso.json")
    ap.add_argument("--recipe", default="human+teacher")
    args = ap.parse_args(argv)
    data = json.loads(args.json.read_text())
    rows = data["out_of_fold"][args.recipe]
    maps = np.load(args.json.with_name(f"{args.json.stem}-{args.recipe}-maps.npz"))
    photos = analyses(rows, maps)
    humans = [Box(*r["human"]) for r in rows]
    sources = sorted({r["source"] for r in rows})

    rules = [SubjectRule(f, t, s, fill, b) for f, t, s, fill, b in itertools.product(FLOORS, TAILS, SCORES, FILLS, BLENDS)]
    table: dict[SubjectRule, dict[str, float]] = {}
    for rule in rules:
        ious = [iou(Box(*summarize_subject(a, rule).box), h) for a, h in zip(photos, humans, strict=True)]
        table[rule] = per_source(rows, ious)
    map_only = [iou(Box(*summarize_subject(ImageAnalysis(a.size, a.fmap, a.subject, a.faces, []), SUBJECT_RULE).box), h)
                for a, h in zip(photos, humans, strict=True)]
    map_table = per_source(rows, map_only)

    print(f"{len(rows)} masks, recipe {args.recipe}, {len(rules)} rules")
    print(f"{'source left out':24s} {'map':>6s} {'shipped rule':>13s} {'chosen on others':>17s}  rule")
    chosen_scores = []
    for s in sources:
        others = [o for o in sources if o != s]
        best = max(rules, key=lambda r: statistics.fmean(table[r][o] for o in others))
        chosen_scores.append(table[best][s])
        print(f"{s:24s} {map_table[s]:6.3f} {table[SUBJECT_RULE][s]:13.3f} {table[best][s]:17.3f}  {best}")
    print(f"{'mean over sources':24s} {statistics.fmean(map_table.values()):6.3f} "
          f"{statistics.fmean(table[SUBJECT_RULE].values()):13.3f} {statistics.fmean(chosen_scores):17.3f}")
    final = max(rules, key=lambda r: statistics.fmean(table[r].values()))
    print(f"rule chosen on all sources: {final} -> {table[final]}")
    print("top 8 on all sources:")
    for r in sorted(rules, key=lambda r: -statistics.fmean(table[r].values()))[:8]:
        print(f"  {statistics.fmean(table[r].values()):.3f} {table[r]} {r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
