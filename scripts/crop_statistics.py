#!/usr/bin/env python3
"""Crop-geometry statistics of real human crops -> ``pic_plugin/data/crop_geometry.json``.

Sources (``../shared/data/crop-annotations``): FLMS (500 images x ~10 workers, free crops), GAICD (the
best-scored grid crop of each of 1,236 images) and FCDB (the expert crop of its 345 test images). None of
the files stores image sizes, so they are recovered: FLMS images are Flickr "Large" (long side 1024), so only
images whose crops reach 1024 on one axis are used and the other side is taken as the largest extent any
worker kept (a slight over-estimate of area share); GAICD's grid is symmetric, so W = min(x1) + max(x2);
FCDB's long side comes from the Flickr size suffix of its URL (_b 1024, _c 800, _z 640) and its aspect from
the extent of the sliding windows the dataset ships for each test image. The result is a histogram of the
crop's area share and the mean/spread of its centre: the composition scorer's geometry prior.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pic_plugin.analysis.composition import GEOMETRY_FILE
from pic_plugin.research.datasets import shared_data_dir

BINS = 20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=GEOMETRY_FILE)
    args = ap.parse_args(argv)
    root = shared_data_dir()
    if root is None:
        print("no shared data found", file=sys.stderr)
        return 2
    ann = root / "crop-annotations"
    rows: list[tuple[float, float, float]] = []
    flms = json.loads((ann / "FLMS/annotations/bcmi_image_crop.json").read_text())
    for crops in flms.values():
        b = np.asarray(crops, dtype=float)
        w, h = b[:, 2].max(), b[:, 3].max()
        if max(w, h) != 1024:
            continue
        for x0, y0, x1, y1 in b:
            rows.append(((x1 - x0) * (y1 - y0) / (w * h), (x0 + x1) / 2 / w, (y0 + y1) / 2 / h))
    n_flms = len(rows)
    gaicd = json.loads((ann / "GAICD/annotations/bcmi_image_crop.json").read_text())
    for item in gaicd.values():
        b = np.asarray(item["bbox"], dtype=float)
        s = np.asarray(item["score"], dtype=float)
        w, h = b[:, 0].min() + b[:, 2].max(), b[:, 1].min() + b[:, 3].max()
        x0, y0, x1, y1 = b[int(s.argmax())]
        rows.append(((x1 - x0) * (y1 - y0) / (w * h), (x0 + x1) / 2 / w, (y0 + y1) / 2 / h))
    n_gaicd = len(rows) - n_flms
    long_sides = {"b": 1024, "c": 800, "z": 640}
    windows = json.loads((ann / "FCDB/annotations/sliding_window.json").read_text())
    tests = json.loads((ann / "FCDB/annotations/cropping_testing_set.json").read_text())
    for win, item in zip(windows, tests, strict=True):
        long_side = long_sides.get(item["url"].rsplit("_", 1)[-1].split(".")[0])
        extents = np.asarray(win["crops"][1:], dtype=float)
        if long_side is None or len(extents) == 0:
            continue
        ew, eh = (extents[:, 0] + extents[:, 2]).max(), (extents[:, 1] + extents[:, 3]).max()
        w, h = (long_side, long_side * eh / ew) if ew >= eh else (long_side * ew / eh, long_side)
        x, y, cw, ch = item["crop"]
        x1, y1 = min(x + cw, w), min(y + ch, h)
        rows.append(((x1 - x) * (y1 - y) / (w * h), (x + x1) / 2 / w, (y + y1) / 2 / h))
    n_fcdb = len(rows) - n_flms - n_gaicd
    a = np.clip(np.asarray(rows), 0, 1)
    hist, edges = np.histogram(a[:, 0], bins=BINS, range=(0, 1))
    density = (hist + 1) / (hist.sum() + BINS)  # Laplace smoothing: no area share is impossible
    out = {
        "source": f"FLMS ({n_flms} crops) + GAICD best crops ({n_gaicd}) + FCDB test expert crops ({n_fcdb})",
        "area_bins": edges.round(4).tolist(),
        "area_density": density.round(6).tolist(),
        "center_mean": [round(float(a[:, 1].mean()), 4), round(float(a[:, 2].mean()), 4)],
        "center_std": [round(float(a[:, 1].std()), 4), round(float(a[:, 2].std()), 4)],
        "area_quantiles": {str(q): round(float(np.quantile(a[:, 0], q)), 4) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
