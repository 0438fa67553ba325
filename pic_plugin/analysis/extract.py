"""Feature extraction: one backbone pass, the heads and the face detector on a decoded photo -> ``ImageAnalysis``.

torch is imported here only when a photo is actually analyzed, so everything that merely reads cached features
stays light.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from pic_plugin.analysis.detector import detect_objects
from pic_plugin.analysis.features import FAST_FEATURE_VERSION, FEATURE_VERSION, ImageAnalysis
from pic_plugin.imaging.faces import detect_faces

if TYPE_CHECKING:
    from pic_plugin.imaging.decode import DecodedImage


@lru_cache(maxsize=1)
def tune_allocator() -> None:
    """Keep large freed blocks in glibc's heap instead of returning them to the kernel.

    Each CNN pass allocates tens of MB of short-lived tensors; by default glibc serves them with fresh mmap()
    pages, and the page faults cost ~25% of the backbone's time (measured with bench/bench_batch.py).
    """
    try:
        import ctypes
        import sys

        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 256 * 1024 * 1024)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 512 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


_lock = threading.Lock()


def analyze(decoded: DecodedImage, with_faces: bool = True, with_objects: bool = True) -> ImageAnalysis:
    """Run the backbone, the feature head, the face detector and the object detector on one decoded image."""
    import torch

    from pic_plugin.analysis import backbone
    from pic_plugin.analysis.heads import backbone_input, load_head

    tune_allocator()
    net, head = backbone.load_fast_backbone(), load_head()
    x = backbone_input(decoded.pixels)
    with torch.inference_mode():
        fmap, logits = head(net(x))
    subject = torch.sigmoid(logits[0]).numpy().astype(np.float32)
    faces = detect_faces(decoded.pixels) if with_faces else []
    objects = detect_objects(decoded.pixels) if with_objects else []
    version = FEATURE_VERSION if with_objects else FAST_FEATURE_VERSION
    return ImageAnalysis(decoded.size, fmap[0].numpy().astype(np.float16), subject, faces, objects, version)


def set_single_threaded() -> None:
    """Worker processes share the cores: one thread each for torch and OpenCV is fastest overall."""
    import torch

    with _lock:
        torch.set_num_threads(1)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        try:
            import cv2

            cv2.setNumThreads(1)
        except ImportError:  # pragma: no cover - OpenCV is a dependency
            pass
