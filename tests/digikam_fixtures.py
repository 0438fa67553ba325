"""Test helpers for digiKam histories: filter steps, hypothesis chains of them, and numpy replays to check against."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from pic_plugin.editors.digikam.history import (
    FilterStep,
)


def crop_step(x: int, y: int, w: int, h: int, ratio: bool = True) -> FilterStep:
    name = "digikam:RatioCrop" if ratio else "transform:crop"
    disp = "Aspect Ratio Crop" if ratio else "Crop"
    return FilterStep(name, disp, 1, "reproducible", False,
                      (("height", str(h)), ("width", str(w)), ("x", str(x)), ("y", str(y))))


def rotate_step(angle: int) -> FilterStep:
    return FilterStep("transform:rotate", "Rotate Right", 1, "reproducible", False, (("angle", str(angle)),))


def coordinate_image(w: int, h: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx, yy], axis=-1)


def apply_numpy(arr: np.ndarray, step: FilterStep) -> np.ndarray:
    """What digiKam's DImg does, with numpy (ROT90 = clockwise, see DImg::rotate)."""
    key = step.key
    if key in ("digikam:ratiocrop", "transform:crop"):
        x, y, w, h = (int(step.param(k)) for k in ("x", "y", "width", "height"))
        return arr[y:y + h, x:x + w]
    if key == "transform:rotate":
        return np.rot90(arr, k={90: -1, 180: 2, 270: 1}[int(step.param("angle"))])
    if key == "transform:flip":
        return arr[::-1] if step.param("direction") == "vertical" else arr[:, ::-1]
    if key == "transform:resize":  # nearest neighbour, pixel centres
        nw, nh = int(step.param("width")), int(step.param("height"))
        h, w = arr.shape[:2]
        ys = np.minimum(((np.arange(nh) + 0.5) * h / nh).astype(int), h - 1)
        xs = np.minimum(((np.arange(nw) + 0.5) * w / nw).astype(int), w - 1)
        return arr[ys][:, xs]
    raise AssertionError(key)


def exif_display(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Stored raster -> displayed frame for an EXIF orientation (numpy; independent of pic's orientation.py)."""
    return {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, -1)[::-1],
        8: lambda a: np.rot90(a, 1),
    }[orientation](arr)


@st.composite
def chains(draw, max_steps: int = 6):
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    cur_w, cur_h = w, h
    steps: list[FilterStep] = []
    for _ in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from(["crop", "crop", "rotate", "flip"]))
        if kind == "crop":
            x0 = draw(st.integers(0, cur_w - 1))
            y0 = draw(st.integers(0, cur_h - 1))
            cw = draw(st.integers(1, cur_w - x0))
            ch = draw(st.integers(1, cur_h - y0))
            steps.append(crop_step(x0, y0, cw, ch, ratio=draw(st.booleans())))
            cur_w, cur_h = cw, ch
        elif kind == "rotate":
            angle = draw(st.sampled_from([90, 180, 270]))
            steps.append(rotate_step(angle))
            if angle != 180:
                cur_w, cur_h = cur_h, cur_w
        else:
            steps.append(flip_step(draw(st.sampled_from(["horizontal", "vertical"]))))
    return (w, h), steps


def flip_step(direction: str) -> FilterStep:
    return FilterStep("transform:flip", "Flip", 1, "reproducible", False, (("direction", direction),))

