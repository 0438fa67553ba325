"""COCO objects in a photo: NanoDet-g (Apache-2.0) run by pic's own TFJS-graph executor, for finding the subject.

``detect_objects(rgb)`` returns :class:`Detection` s (normalized box in the image given, score, COCO label).
The network file ``data/detector.pt`` is made by ``scripts/convert_detector.py`` (see
``data/DETECTOR-PROVENANCE.md``); it is loaded on first use, once per process, under a lock.

Input sizing follows NanoDet's own pipeline: the photo is letterboxed into 416 x 416 keeping its ratio (scaled
so the long side is 416, centred, black fill), turned to BGR and normalized with NanoDet's mean and std.
``square=False`` runs it on the photo's own shape instead (the short side padded only to a multiple of 32: a 3:2
photo on 416 x 288, 30% less work, and on the 498 human subject masks a main-object box IoU of 0.564 against
0.558), but a prior retrained on those detections still scores 0.006 lower at k=10 than the shipped one on the
square's (README "Finding the subject"), so the square stays the default. The network is fully convolutional;
its export froze the FPN's 2x resizes to 416's sizes, which ``tfjs_graph.follow_input_size`` turns back into
scales on the first own-shape run. Each of
the three heads (strides 8, 16, 32) gives per cell 80 sigmoid class scores and four side distances, each a
softmax over 11 bins whose expectation times the stride is the distance from the cell centre. Boxes above
``min_score`` go through per-class non-maximum suppression (IoU 0.6, as NanoDet evaluates) and are mapped back
out of the letterbox. ``pick_subject`` turns the detections into one subject box by a named rule.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from pic_plugin.analysis.features import Detection
from pic_plugin.core.geometry import Box, intersection
from pic_plugin.core.paths import DATA_DIR

if TYPE_CHECKING:
    import torch

    from pic_plugin.analysis.tfjs_graph import Executor

DETECTOR_FILE = DATA_DIR / "detector.pt"
MIN_SCORE = 0.3
NMS_IOU = 0.6
MAX_DETECTIONS = 100
PRE_NMS = 1000  # best candidates kept for NMS
STRIDE_MULTIPLE = 32  # the coarsest head's stride: input sides must be multiples of it


@dataclass
class _Model:
    executor: Executor
    meta: dict[str, Any]
    any_shape: bool = False  # the executor's graph follows its input's size (follow_input_size ran)


_lock = threading.Lock()
_model: _Model | None = None


def _load(any_shape: bool = False) -> _Model:
    """The detector, loaded once; ``any_shape``: able to run on inputs other than the exported square."""
    global _model
    with _lock:
        if _model is None:
            import torch

            from pic_plugin.analysis.tfjs_graph import Executor, Graph

            if not DETECTOR_FILE.is_file():
                raise FileNotFoundError(f"{DETECTOR_FILE} is missing: run scripts/convert_detector.py")
            graph = Graph.from_state(torch.load(DETECTOR_FILE, map_location="cpu", weights_only=True))
            _model = _Model(Executor(graph), graph.meta)
        if any_shape and not _model.any_shape:
            # The export froze the FPN's 2x up- and downsampling to the square's sizes; make them follow the
            # input. Done only when asked: it costs one run of the network, and the square (the default) needs
            # none. The rewritten graph gives the same outputs on the square, so it replaces the first.
            import torch

            from pic_plugin.analysis.tfjs_graph import Executor, follow_input_size

            size = int(_model.meta["input_size"])
            graph = follow_input_size(_model.executor.graph, {_model.meta["input"]: torch.zeros(1, 3, size, size)})
            _model = _Model(Executor(graph), _model.meta, any_shape=True)
        return _model


@dataclass(frozen=True)
class Letterbox:
    """Where the photo sits in the square network input (pixels of the input)."""

    scale: float
    left: int
    top: int
    width: int  # of the photo as placed
    height: int


def letterbox(rgb: np.ndarray, size: int, multiple: int | None = None) -> tuple[np.ndarray, Letterbox]:
    """The photo scaled so its long side is ``size``, centred on black; and where it went.

    Without ``multiple`` the canvas is ``size`` x ``size`` (NanoDet's own square input); with it, the short side
    is only padded up to a multiple of ``multiple``, so a 3:2 photo is not run through a third of black.
    """
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    img = Image.fromarray(np.ascontiguousarray(rgb))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    cw, ch = (size, size) if multiple is None else (-(-nw // multiple) * multiple, -(-nh // multiple) * multiple)
    canvas = np.zeros((ch, cw, 3), dtype=np.uint8)
    left, top = (cw - nw) // 2, (ch - nh) // 2
    canvas[top : top + nh, left : left + nw] = np.asarray(img)
    return canvas, Letterbox(scale, left, top, nw, nh)


def network_input(canvas: np.ndarray, meta: dict[str, Any]) -> torch.Tensor:
    import torch

    bgr = torch.from_numpy(np.ascontiguousarray(canvas[:, :, ::-1])).float()
    mean, std = torch.tensor(meta["mean_bgr"]), torch.tensor(meta["std_bgr"])
    return ((bgr - mean) / std).permute(2, 0, 1).unsqueeze(0).contiguous()


def decode_heads(
    outputs: dict[str, torch.Tensor], meta: dict[str, Any], shape: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All cells' boxes (N x 4, input pixels x0 y0 x1 y1) and class scores (N x 80), for an input of ``shape``
    (height, width; default the square the model was exported at)."""
    import torch

    bins = int(meta["reg_max"]) + 1
    height, width = shape or (int(meta["input_size"]),) * 2
    boxes, scores = [], []
    for head in meta["heads"]:
        stride = int(head["stride"])
        cols = width // stride
        s = outputs[head["scores"]][0]
        dist = torch.softmax(outputs[head["boxes"]][0].reshape(-1, 4, bins), dim=2)
        dist = (dist * torch.arange(bins, dtype=dist.dtype)).sum(2) * stride  # left, top, right, bottom
        idx = torch.arange(len(dist))  # cells row by row
        cx, cy = ((idx % cols).float() + 0.5) * stride, ((idx // cols).float() + 0.5) * stride
        b = torch.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], dim=1)
        b[:, 0::2] = b[:, 0::2].clamp(0, width)
        b[:, 1::2] = b[:, 1::2].clamp(0, height)
        boxes.append(b)
        scores.append(s)
    return torch.cat(boxes), torch.cat(scores)


def box_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import torch

    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices kept by greedy non-maximum suppression, best score first."""
    import torch

    order = torch.argsort(scores, descending=True)
    overlaps = box_iou_matrix(boxes[order], boxes[order]) > threshold
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i]
    return order[torch.tensor(keep, dtype=torch.long)]


def detect_objects(
    rgb: np.ndarray, min_score: float = MIN_SCORE, square: bool = True
) -> list[Detection]:
    """COCO objects in an H x W x 3 uint8 RGB image, best first, boxes normalized to that image.

    ``square``: letterbox into the model's square as NanoDet's own pipeline does (what the shipped prior learned
    from); False keeps the long side and pads the short side only to the next multiple of 32.
    """
    import torch

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    if min(h, w) < 2:
        return []
    model = _load(any_shape=not square)
    meta = model.meta
    side = int(meta["input_size"])
    canvas, place = letterbox(rgb, side, None if square else STRIDE_MULTIPLE)
    with torch.no_grad():
        outputs = model.executor.run({meta["input"]: network_input(canvas, meta)})
        boxes, scores = decode_heads(outputs, meta, canvas.shape[:2])
        cell, label = torch.nonzero(scores > min_score, as_tuple=True)
        if len(cell) == 0:
            return []
        cand_scores = scores[cell, label]
        if len(cand_scores) > PRE_NMS:
            top = torch.topk(cand_scores, PRE_NMS).indices
            cell, label, cand_scores = cell[top], label[top], cand_scores[top]
        cand_boxes = boxes[cell]
        # Per-class NMS in one pass: boxes of different classes are moved apart so they never overlap.
        offset = label.float()[:, None] * (2 * float(side) + 1)
        keep = nms(cand_boxes + offset, cand_scores, NMS_IOU)[:MAX_DETECTIONS]
    classes = meta["classes"]
    out = []
    for i in keep.tolist():
        x0, y0, x1, y1 = cand_boxes[i].tolist()
        box = Box(
            (x0 - place.left) / place.width,
            (y0 - place.top) / place.height,
            (x1 - place.left) / place.width,
            (y1 - place.top) / place.height,
        ).clamped()
        if box.width > 0 and box.height > 0:
            out.append(Detection(box, float(cand_scores[i]), classes[int(label[i])]))
    return out


# --- one subject box from the detections ----------------------------------------------------------------------

PICK_RULES = ("score_sqrt_area", "top_score", "union_overlapping", "union_strong")


def pick_subject(
    detections: list[Detection], rule: str = "score_sqrt_area", min_score: float = MIN_SCORE
) -> Box | None:
    """The subject box by ``rule``, or None when no detection reaches ``min_score``.

    - ``score_sqrt_area``: the detection with the largest score x sqrt(area): big, confident objects win;
    - ``top_score``: the most confident detection;
    - ``union_overlapping``: the ``score_sqrt_area`` pick grown by every detection of at least half its score that
      overlaps it (a rider and the horse, a person and the dog they hold);
    - ``union_strong``: the union of all detections of at least half the best score (groups of people).
    """
    dets = [d for d in detections if d.score >= min_score]
    if not dets:
        return None
    if rule == "top_score":
        return max(dets, key=lambda d: d.score).box
    best = max(dets, key=lambda d: d.score * math.sqrt(d.box.area))
    if rule == "score_sqrt_area":
        return best.box
    if rule == "union_overlapping":
        group = [best.box]
        for d in dets:
            if d.score >= 0.5 * best.score and intersection(d.box, best.box) > 0:
                group.append(d.box)
        return _union(group)
    if rule == "union_strong":
        top = max(d.score for d in dets)
        return _union([d.box for d in dets if d.score >= 0.5 * top])
    raise ValueError(f"unknown rule {rule!r}; one of {', '.join(PICK_RULES)}")


def _union(boxes: list[Box]) -> Box:
    return Box(
        min(b.left for b in boxes), min(b.top for b in boxes), max(b.right for b in boxes), max(b.bottom for b in boxes)
    )
