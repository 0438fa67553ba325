#!/usr/bin/env python3
"""Subject-box IoU leaving one annotation source out, with the subject head *retrained* for every fold.

For each annotation source S (SOD/BSDS, RITM Berkeley, RITM COCO-MVal) and each training recipe:

- ``human``: the head trained on the human masks of the other sources (every split);
- ``human+teacher``: the same plus the teacher's pseudo-masks (``scripts/make_teacher_masks.py``) of every photo
  that holds no mask of S;
- ``teacher-branch``: the ``human`` fold head with its CNN map frozen and only its subject branch trained further
  on the ``human+teacher`` targets (the shipped recipe: the prior's inputs stay those it was trained on);

the head is trained from scratch without any photo that holds a mask of S (SOD and RITM Berkeley share BSDS
photos: such a photo is out of both), then measured on every mask of S. Per photo the box is what pic frames:
``analysis.subject.summarize_subject`` of the head's map with the faces (``map``) and with the detector's objects
too (``fused``, ``OBJECT_MIN_SCORE`` fixed beforehand). The shipped head (``shipped``, trained on the ``train``
split of every source) is only fair on the ``test`` split of S, so that column is measured there.

Needs ../shared/data; faces, objects and backbone taps are cached under build/. Prints the table the README's
"Finding the subject" section shows and writes build/subject-loso.json.

    python scripts/measure_subject_loso.py [--epochs 15] [--recipes human,human+teacher,teacher-branch]
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pic_plugin.analysis.detector import detect_objects  # noqa: E402
from pic_plugin.analysis.features import ImageAnalysis  # noqa: E402
from pic_plugin.analysis.heads import load_head  # noqa: E402
from pic_plugin.analysis.subject import main_object, summarize_subject  # noqa: E402
from pic_plugin.core.geometry import Box, iou  # noqa: E402
from pic_plugin.imaging.decode import decode  # noqa: E402
from pic_plugin.imaging.faces import detect_faces  # noqa: E402
from pic_plugin.research.datasets import SubjectPhoto, subject_photos  # noqa: E402
from pic_plugin.research.subject_head_training import (  # noqa: E402
    TapCache,
    annotation_source,
    build_targets,
    load_examples,
    photo_key,
    subject_map,
    teacher_masks,
    train_head,
)

EXTRAS = REPO / "build" / "subject-extras.pkl"
FULL = Box(0.0, 0.0, 1.0, 1.0)


def extras_for(photos: list[SubjectPhoto]) -> dict[str, Any]:
    """Faces and detector objects per photo (they do not depend on the head), cached."""
    cache: dict[str, Any] = pickle.loads(EXTRAS.read_bytes()) if EXTRAS.is_file() else {}
    missing = sorted({photo_key(p.image) for p in photos} - set(cache))
    for key in missing:
        decoded = decode(key)
        cache[key] = {"size": decoded.size, "faces": detect_faces(decoded.pixels),
                      "objects": detect_objects(decoded.pixels)}
    if missing:
        EXTRAS.parent.mkdir(parents=True, exist_ok=True)
        EXTRAS.write_bytes(pickle.dumps(cache))
    return cache


def boxes(subject: np.ndarray, extra: dict[str, Any]) -> dict[str, Box]:
    def summary(objects: list[Any]) -> Box:
        a = ImageAnalysis(extra["size"], np.zeros((1, 1, 1), np.float16), subject, extra["faces"], objects)
        return Box(*summarize_subject(a).box)

    obj = main_object(extra["objects"])
    return {"map": summary([]), "fused": summary(extra["objects"]), "objects": obj.box if obj else FULL}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--recipes", default="human,human+teacher,teacher-branch")
    ap.add_argument("--json", type=Path, default=REPO / "build" / "subject-loso.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    human = subject_photos()
    if not human:
        print("no ../shared/data/photos (or $PIC_SHARED_DATA)", file=sys.stderr)
        return 2
    teacher = teacher_masks()
    recipes = args.recipes.split(",")
    if "teacher-branch" in recipes and ("human" not in recipes or recipes.index("human") > recipes.index("teacher-branch")):
        print("teacher-branch starts from the human fold head: list human before it", file=sys.stderr)
        return 2
    if any("teacher" in r for r in recipes) and not teacher:
        print("no teacher masks: run scripts/make_teacher_masks.py first", file=sys.stderr)
        return 2
    print(f"{len(human)} human masks, {len(teacher)} teacher masks", flush=True)
    t0 = time.perf_counter()
    extras = extras_for(human)
    cache = TapCache()
    shipped = load_head()
    print(f"faces and objects ready in {time.perf_counter() - t0:.0f} s", flush=True)

    sources = sorted({annotation_source(p) for p in human})
    results: dict[str, Any] = {}
    oof: dict[str, list[dict[str, Any]]] = {}
    oof_maps: dict[str, list[np.ndarray]] = {}
    for s in sources:
        held = [p for p in human if annotation_source(p) == s]
        row: dict[str, Any] = {"n": len(held), "n_test": sum(p.split == "test" for p in held)}
        ref = {id(p): boxes(subject_map(shipped, cache.taps(p.image)), extras[photo_key(p.image)]) for p in held}
        test = [p for p in held if p.split == "test"]
        row["shipped_test"] = {k: statistics.fmean(iou(ref[id(p)][k], p.subject_box) for p in test)
                               for k in ("map", "fused", "objects")}
        row["frame"] = statistics.fmean(iou(FULL, p.subject_box) for p in held)
        row["objects"] = statistics.fmean(iou(ref[id(p)]["objects"], p.subject_box) for p in held)
        fold_heads = {}
        for recipe in recipes:
            targets = build_targets(human, teacher if "teacher" in recipe else {}, leave_out=s)
            t1 = time.perf_counter()
            head = train_head(load_examples(targets, cache), epochs=args.epochs,
                              keep_map=fold_heads["human"] if recipe == "teacher-branch" else None)
            fold_heads[recipe] = head
            maps = {id(p): subject_map(head, cache.taps(p.image)) for p in held}
            got = {id(p): boxes(maps[id(p)], extras[photo_key(p.image)]) for p in held}
            row[recipe] = {
                "targets": len(targets),
                "all": {k: statistics.fmean(iou(got[id(p)][k], p.subject_box) for p in held) for k in ("map", "fused")},
                "test": {k: statistics.fmean(iou(got[id(p)][k], p.subject_box) for p in test) for k in ("map", "fused")},
                "train_s": round(time.perf_counter() - t1),
            }
            print(f"{s} left out, {recipe}: {row[recipe]}", flush=True)
            for p in held:  # out-of-fold boxes: what the fusion is chosen on (scripts/choose_subject_fusion.py)
                extra = extras[photo_key(p.image)]
                oof_maps.setdefault(recipe, []).append(maps[id(p)])
                oof.setdefault(recipe, []).append({
                    "image": photo_key(p.image), "source": s, "split": p.split, "human": list(p.subject_box),
                    "map": list(got[id(p)]["map"]),
                    "objects": [{"box": list(o.box), "score": o.score, "label": o.label} for o in extra["objects"]],
                    "faces": [{"box": list(f.box), "score": f.score} for f in extra["faces"]],
                })
        results[s] = row

    print("\nsubject-box IoU, each source left out (the head retrained without it; all its masks / its test split):")
    header = f"{'source left out':24s} {'n':>4s} {'frame':>6s} {'objects':>8s}"
    for r in recipes:
        header += f" {r + ' map':>20s} {r + ' fused':>22s}"
    header += f" {'shipped fused (test)':>21s}"
    print(header)
    for s, row in results.items():
        line = f"{s:24s} {row['n']:4d} {row['frame']:6.3f} {row['objects']:8.3f}"
        for r in recipes:
            line += f" {row[r]['all']['map']:20.3f} {row[r]['all']['fused']:22.3f}"
        line += f" {row['shipped_test']['fused']:21.3f}"
        print(line)
    line = f"{'mean over sources':24s} {'':4s} {statistics.fmean(r['frame'] for r in results.values()):6.3f} {'':8s}"
    for r in recipes:
        line += f" {statistics.fmean(x[r]['all']['map'] for x in results.values()):20.3f}"
        line += f" {statistics.fmean(x[r]['all']['fused'] for x in results.values()):22.3f}"
    print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"folds": results, "out_of_fold": oof}, indent=1))
    for recipe, maps_list in oof_maps.items():  # row i of out_of_fold[recipe] <-> map_i
        np.savez_compressed(args.json.with_name(f"{args.json.stem}-{recipe}-maps.npz"),
                            **{f"map_{i}": m for i, m in enumerate(maps_list)})
    print(f"total {time.perf_counter() - t0:.0f} s; per-fold results in {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
