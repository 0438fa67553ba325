#!/usr/bin/env python3
"""How well the teacher's pseudo-masks (``scripts/make_teacher_masks.py``) match the human subject masks.

For every photo of ``pic_plugin.research.datasets.subject_photos()`` whose teacher mask exists (so it can run while the
teacher is still going), per mask set (SOD, RITM Berkeley, RITM COCO-MVal: the folder of the annotation) and in all:

- box IoU of the tight box of the teacher mask thresholded at 0.5 vs the human box (an empty teacher mask
  counts as IoU 0 and is counted in ``empty``);
- box IoU of a robust box: the ``q`` and ``1 - q`` quantiles of the teacher's probability mass along x and y
  (``--quantile``, default 0.001: a few stray pixels of foreground cannot stretch it, and a faint mask still
  gives a box; picked on the 'train' photos from 0.0005-0.02, where larger quantiles cut into the subject);
- mask IoU at 0.5, on the teacher mask's grid (the human mask is reduced to it by area averaging, then halved);
- for scale, the box IoU of the whole frame vs the human box (what a subject head that knows nothing scores).

    python scripts/measure_teacher.py [--masks build/teacher-masks] [--split all|train|test] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pic_plugin.core.geometry import Box, iou
from pic_plugin.research.datasets import REPO_ROOT, SubjectPhoto, shared_data_dir, subject_photos

FULL_FRAME = Box(0.0, 0.0, 1.0, 1.0)


def threshold_box(prob: np.ndarray, threshold: float = 0.5) -> Box | None:
    """Tight normalized box of ``prob >= threshold`` (edges, not pixel centres), None when empty."""
    fg = prob >= threshold
    if not fg.any():
        return None
    h, w = fg.shape
    ys = np.flatnonzero(fg.any(axis=1))
    xs = np.flatnonzero(fg.any(axis=0))
    return Box(xs[0] / w, ys[0] / h, (xs[-1] + 1) / w, (ys[-1] + 1) / h)


def _quantile_edges(profile: np.ndarray, q: float) -> tuple[float, float]:
    cdf = np.cumsum(profile) / profile.sum()
    n = profile.size
    lo = int(np.searchsorted(cdf, q, side="left"))
    hi = int(np.searchsorted(cdf, 1.0 - q, side="left")) + 1
    return lo / n, min(hi, n) / n


def mass_box(prob: np.ndarray, q: float = 0.001) -> Box | None:
    """The box between the q and 1-q quantiles of the probability mass along each axis, None when no mass."""
    if float(prob.sum()) <= 1e-6:
        return None
    left, right = _quantile_edges(prob.sum(axis=0), q)
    top, bottom = _quantile_edges(prob.sum(axis=1), q)
    return Box(left, top, right, bottom)


def human_mask_on(photo: SubjectPhoto, size: tuple[int, int]) -> np.ndarray:
    with Image.open(photo.mask) as m:
        grey = m.convert("L")
    small = np.asarray(grey.resize(size, Image.Resampling.BOX), dtype=np.float32) / 255.0
    return small >= 0.5


def source_of(photo: SubjectPhoto, photos_dir: Path) -> str:
    return photo.mask.relative_to(photos_dir).parts[0]


def measure(masks_dir: Path, photos: list[SubjectPhoto], photos_dir: Path, q: float) -> dict[str, dict[str, Any]]:
    manifest = json.loads((masks_dir / "manifest.json").read_text())
    entries = manifest["photos"]
    root = photos_dir.resolve()
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    missing: dict[str, int] = defaultdict(int)
    for photo in photos:
        source = source_of(photo, photos_dir)
        key = photo.image.resolve().relative_to(root).as_posix()
        entry = entries.get(key)
        if entry is None or not (masks_dir / entry["mask"]).is_file():
            missing[source] += 1
            continue
        with Image.open(masks_dir / entry["mask"]) as m:
            prob = np.asarray(m.convert("L"), dtype=np.float32) / 255.0
        h, w = prob.shape
        human = human_mask_on(photo, (w, h))
        teacher = prob >= 0.5
        union = int((human | teacher).sum())
        tbox = threshold_box(prob)
        mbox = mass_box(prob, q)
        row = {
            "box_iou_0.5": iou(tbox, photo.subject_box) if tbox else 0.0,
            f"box_iou_mass_q{q:g}": iou(mbox, photo.subject_box) if mbox else 0.0,
            "mask_iou_0.5": (int((human & teacher).sum()) / union) if union else 1.0,
            "full_frame_box_iou": iou(FULL_FRAME, photo.subject_box),
            "empty": 0.0 if tbox else 1.0,
        }
        rows[source].append(row)
        rows["all"].append(row)
    out: dict[str, dict[str, Any]] = {}
    for source in sorted(rows, key=lambda s: (s == "all", s)):
        rs = rows[source]
        summary: dict[str, Any] = {"n": len(rs), "missing": missing.get(source, 0) if source != "all" else
                                   sum(missing.values())}
        for name in rs[0]:
            values = np.array([r[name] for r in rs])
            if name == "empty":
                summary[name] = int(values.sum())
            else:
                summary[name] = round(float(values.mean()), 3)
                summary[name + "_median"] = round(float(np.median(values)), 3)
        out[source] = summary
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--masks", type=Path, default=REPO_ROOT / "build" / "teacher-masks")
    ap.add_argument("--split", choices=["all", "train", "test"], default="all")
    ap.add_argument("--quantile", type=float, default=0.001, help="mass quantile of the robust box (default 0.001)")
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = ap.parse_args(argv)
    shared = shared_data_dir()
    if shared is None:
        print("no ../shared/data (or $PIC_SHARED_DATA)", file=sys.stderr)
        return 2
    if not (args.masks / "manifest.json").is_file():
        print(f"no {args.masks / 'manifest.json'}: run scripts/make_teacher_masks.py first", file=sys.stderr)
        return 2
    photos = [p for p in subject_photos(shared) if args.split == "all" or p.split == args.split]
    table = measure(args.masks, photos, shared / "photos", args.quantile)
    if not table:
        print("no teacher mask for any annotated photo yet", file=sys.stderr)
        return 1
    columns = [c for c in next(iter(table.values())) if not c.endswith("_median")]
    print(f"split={args.split}  (mean; medians in --json)")
    print(f"{'source':24s}" + "".join(f"{c:>22s}" for c in columns))
    for source, summary in table.items():
        print(f"{source:24s}" + "".join(f"{summary[c]:>22}" for c in columns))
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "quantile": args.quantile, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
