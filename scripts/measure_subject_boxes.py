#!/usr/bin/env python3
"""Subject boxes from the COCO detector vs pic's subject map vs the full frame, against human subject boxes.

For every photo of ``pic_plugin.research.datasets.subject_photos()`` (decoded as pic analyzes it: ``decode(path)``, long side
<= 512), per mask set (the annotation's folder: SOD, RITM Berkeley, RITM COCO-MVal), per split (``train`` /
``test``: pic's subject head trained on ``train`` only, so ``test`` is the fair comparison) and in all:

- ``pic_map``: ``composition.summarize_subject(features.analyze(decoded)).box``, the box pic's composition
  features use today (99% of the subject map's mass, faces added);
- ``det:<rule>@<min score>``: ``subject_detector.pick_subject`` of one ``detect_objects`` call per photo; a photo
  where no detection reaches the score gets the full frame (``fallback`` counts them);
- ``det:<rule>@<score>|map``: the same, falling back to pic's map box instead of the full frame;
- ``det:<rule>@<score>+map``: the union of the detector's pick and pic's map box (the map box alone without one);
- ``full_frame``: the whole photo, the floor.

Mean box IoU is reported. (Leaving one source out, with the subject head retrained without it, is
``scripts/measure_subject_loso.py``; the fusion is chosen by ``scripts/choose_subject_fusion.py``.)
Timing: seconds per photo of ``detect_objects`` and of ``features.analyze`` on the
first ``--time-photos`` photos, with torch at 1 and at 2 threads (each after one warm-up call).

    python scripts/measure_subject_boxes.py [--json build/subject-boxes.json] [--time-photos 60] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from pic_plugin.analysis import detector as subject_detector  # noqa: E402
from pic_plugin.analysis import extract as features  # noqa: E402
from pic_plugin.analysis.composition import summarize_subject  # noqa: E402
from pic_plugin.core.geometry import Box, iou  # noqa: E402
from pic_plugin.imaging.decode import decode  # noqa: E402
from pic_plugin.research.datasets import SubjectPhoto, subject_photos  # noqa: E402
from pic_plugin.research.subject_head_training import annotation_source  # noqa: E402

FULL_FRAME = Box(0.0, 0.0, 1.0, 1.0)
SCORES = (0.2, 0.3, 0.4, 0.5)
DETECT_FLOOR = 0.1  # detections kept per photo (each rule then applies its own score)


def boxes_for(photo: SubjectPhoto) -> dict[str, Any]:
    decoded = decode(photo.image)
    map_box = Box(*summarize_subject(features.analyze(decoded, with_objects=False)).box)  # the map alone
    dets = subject_detector.detect_objects(decoded.pixels, min_score=DETECT_FLOOR)
    row: dict[str, Any] = {
        "image": str(photo.image),
        "source": annotation_source(photo),
        "split": photo.split,
        "human": list(photo.subject_box),
        "pic_map": list(map_box),
        "detections": [{"box": list(d.box), "score": d.score, "label": d.label} for d in dets],
    }
    return row


def candidate_boxes(row: dict[str, Any]) -> dict[str, tuple[Box, bool]]:
    """Each method's box for one photo, and whether it fell back."""
    dets = [subject_detector.Detection(Box(*d["box"]), d["score"], d["label"]) for d in row["detections"]]
    map_box = Box(*row["pic_map"])
    out: dict[str, tuple[Box, bool]] = {"pic_map": (map_box, False), "full_frame": (FULL_FRAME, False)}
    for rule in subject_detector.PICK_RULES:
        for score in SCORES:
            pick = subject_detector.pick_subject(dets, rule, min_score=score)
            out[f"det:{rule}@{score}"] = (pick or FULL_FRAME, pick is None)
            out[f"det:{rule}@{score}|map"] = (pick or map_box, pick is None)
            out[f"det:{rule}@{score}+map"] = (_union(pick, map_box) if pick else map_box, pick is None)
    return out


def _union(a: Box, b: Box) -> Box:
    return Box(min(a.left, b.left), min(a.top, b.top), max(a.right, b.right), max(a.bottom, b.bottom))


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        for key in (f"{r['source']}/{r['split']}", f"{r['source']}/all", f"ALL/{r['split']}", "ALL/all"):
            groups[key].append(r)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for key, members in sorted(groups.items()):
        per_method: dict[str, list[float]] = defaultdict(list)
        fallbacks: dict[str, int] = defaultdict(int)
        for r in members:
            human = Box(*r["human"])
            for method, (box, fell_back) in candidate_boxes(r).items():
                per_method[method].append(iou(box, human))
                fallbacks[method] += int(fell_back)
        table[key] = {
            m: {"iou": statistics.fmean(v), "n": len(v), "fallback": fallbacks[m]} for m, v in per_method.items()
        }
    return table


def time_calls(photos: list[SubjectPhoto], threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    images = [decode(p.image) for p in photos]
    subject_detector.detect_objects(images[0].pixels)  # warm-up: loading, allocator
    features.analyze(images[0])
    t0 = time.perf_counter()
    for im in images:
        subject_detector.detect_objects(im.pixels, min_score=DETECT_FLOOR)
    t1 = time.perf_counter()
    for im in images:
        features.analyze(im)
    t2 = time.perf_counter()
    return {"detect_s": (t1 - t0) / len(images), "analyze_s": (t2 - t1) / len(images), "photos": len(images)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=REPO / "build" / "subject-boxes.json", help="per-photo results")
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    parser.add_argument("--time-photos", type=int, default=60, help="photos for the timing runs (0: no timing)")
    parser.add_argument("--reuse", action="store_true", help="summarize the --json file again without running")
    args = parser.parse_args(argv)

    if args.reuse:
        data = json.loads(args.json.read_text())
        rows, timing = data["rows"], data.get("timing", {})
    else:
        photos = subject_photos()
        if not photos:
            print("no subject photos: ../shared/data/photos is missing", file=sys.stderr)
            return 1
        if args.limit:
            photos = photos[: args.limit]
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        rows = [boxes_for(p) for p in photos]
        print(f"{len(rows)} photos in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        timing = {}
        if args.time_photos:
            for threads in (1, 2):
                timing[f"{threads}_thread"] = time_calls(photos[: args.time_photos], threads)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "timing": timing}))

    table = summarize(rows)
    headline = ["pic_map", "full_frame"] + [f"det:{r}@0.3" for r in subject_detector.PICK_RULES]
    headline += ["det:score_sqrt_area@0.2", "det:score_sqrt_area@0.4", "det:score_sqrt_area@0.3|map"]
    headline += ["det:union_strong@0.5+map"]
    keys = [k for k in table if not k.startswith("ALL")] + [k for k in table if k.startswith("ALL")]
    print("mean box IoU vs the human subject box (n photos; fallback = photos with no detection at that score)")
    print(f"{'group':34s} {'n':>4s} " + " ".join(f"{m:>14.14s}" for m in headline))
    for key in keys:
        row = table[key]
        print(f"{key:34s} {row['pic_map']['n']:4d} " + " ".join(f"{row[m]['iou']:14.3f}" for m in headline))
    for split in ("test", "train"):
        print(f"\nbest methods on ALL/{split} (the map's head trained on train: only test is fair to the detector):")
        part = table.get(f"ALL/{split}", {})
        for method, v in sorted(part.items(), key=lambda kv: -kv[1]["iou"])[:12]:
            print(f"  {method:38s} {v['iou']:.3f}  fallback {v['fallback']}/{v['n']}")
    print("\ndetector-only rules (full-frame fallback), ALL/test | ALL/train:")
    for method in sorted(m for m in table["ALL/all"] if m.startswith("det:") and "|" not in m and "+" not in m):
        t, tr = table.get("ALL/test", {}).get(method), table.get("ALL/train", {}).get(method)
        if t and tr:
            print(
                f"  {method:38s} {t['iou']:.3f} | {tr['iou']:.3f}  fallback {t['fallback']}/{t['n']} | {tr['fallback']}/{tr['n']}"
            )
    for name, t in timing.items():
        print(
            f"timing {name}: detect_objects {t['detect_s'] * 1000:.0f} ms, features.analyze {t['analyze_s'] * 1000:.0f} ms per photo ({t['photos']} photos)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
