#!/usr/bin/env python3
"""The detector's input shape, side by side: NanoDet's square letterbox against the photo's own shape.

For every human subject mask in ``../shared/data/photos`` (498 photos), the detector's main object (the box pic
joins with its subject map) against the human subject box, and the detector's time per photo, on one core.

    python scripts/measure_detector_input.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from pic_plugin.analysis.detector import detect_objects  # noqa: E402
from pic_plugin.analysis.subject import main_object  # noqa: E402
from pic_plugin.core.geometry import Box, iou  # noqa: E402
from pic_plugin.imaging.decode import decode  # noqa: E402
from pic_plugin.research.datasets import subject_photos  # noqa: E402

SETTINGS = {"square 416 x 416 (NanoDet's letterbox)": True, "own shape, short side to a multiple of 32": False}


def main() -> int:
    torch.set_num_threads(1)
    photos = subject_photos()
    if not photos:
        print("no ../shared/data/photos (or $PIC_SHARED_DATA)", file=sys.stderr)
        return 2
    scores: dict[str, list[float]] = {k: [] for k in SETTINGS}
    seconds = dict.fromkeys(SETTINGS, 0.0)
    for photo in photos:
        pixels = decode(photo.image).pixels
        for name, square in SETTINGS.items():
            start = time.perf_counter()
            found = main_object(detect_objects(pixels, square=square))
            seconds[name] += time.perf_counter() - start
            scores[name].append(iou(found.box if found else Box(0.0, 0.0, 1.0, 1.0), photo.subject_box))
    print(f"{len(photos)} photos with a human subject mask; main object's box IoU (full frame when none), time")
    for name in SETTINGS:
        print(f"  {name}: IoU {statistics.mean(scores[name]):.4f}, {seconds[name] / len(photos) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
