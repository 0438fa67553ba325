"""Test helpers that make photo analyses without running a network."""

from __future__ import annotations

import numpy as np

from pic_plugin.analysis.features import ImageAnalysis


def synthetic_analysis(size=(640, 480), fmap=None, subject_box=(0.25, 0.25, 0.5, 0.75), faces=()) -> ImageAnalysis:  # type: ignore[no-untyped-def]
    h, w = 30, 40
    if fmap is None:
        rng = np.random.default_rng(0)
        fmap = rng.random((16, h // 2, w // 2)).astype(np.float16)
    subject = np.zeros((h, w), dtype=np.float32)
    x0, y0, x1, y1 = subject_box
    subject[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)] = 1.0
    return ImageAnalysis(size, fmap, subject, list(faces))

