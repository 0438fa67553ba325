"""Per-image features: the reduced multi-scale CNN map, a subject (saliency) map and faces.

One backbone pass per image. A small head that we trained on human subject masks (``pic_plugin/data/
feature_head.pt``, retrained by ``scripts/train_feature_head.py``) fuses the stride 8/16/32 maps and reduces
them to ``FEATURE_CHANNELS`` channels *before* any pooling (GAIC's lesson: reducing after pooling is slower),
and predicts where the main subject is. That compact result is what the catalog caches, so scoring again
after a fine-tune needs no image work. Per-candidate features (RoI + RoD pooling, explicit composition
statistics) are computed from it in ``candidate_features``.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import backbone
from .decode import DecodedImage
from .faces import Face, detect_faces
from .geometry import Box

#: Bump when the cached per-image features change meaning (new head weights, other input size).
FEATURE_VERSION = "feat-2"
FEATURE_CHANNELS = 16
INPUT_SHORT_SIDE = 224
INPUT_MAX_LONG_SIDE = 448
HEAD_FILE = Path(__file__).parent / "data" / "feature_head.pt"


class FeatureHead(nn.Module):
    """Fuses the backbone taps into a stride-16 map of FEATURE_CHANNELS and a stride-8 subject map."""

    def __init__(self, channels: int = FEATURE_CHANNELS) -> None:
        super().__init__()
        c8, c16, c32 = backbone.TAP_CHANNELS
        self.reduce8 = nn.Conv2d(c8, channels, 1)
        self.reduce16 = nn.Conv2d(c16, channels, 1)
        self.reduce32 = nn.Conv2d(c32, channels, 1)
        self.detail8 = nn.Conv2d(c8, channels, 1)
        self.subject = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, 1, 1)
        )

    def forward(self, taps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        t8, t16, t32 = taps
        size16 = t16.shape[-2:]
        fused = (
            F.adaptive_avg_pool2d(self.reduce8(t8), size16)
            + self.reduce16(t16)
            + F.interpolate(self.reduce32(t32), size=size16, mode="bilinear", align_corners=False)
        )
        fmap = F.relu(fused)
        up = F.interpolate(fmap, size=t8.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.subject(torch.cat([up, F.relu(self.detail8(t8))], dim=1))
        return fmap, logits[:, 0]


@dataclass
class ImageAnalysis:
    """Everything scoring needs about one image; cached in the catalog (see ``to_bytes``)."""

    size: tuple[int, int]  # full displayed size (W, H)
    fmap: np.ndarray  # C x h x w float16, stride-16 reduced CNN features
    subject: np.ndarray  # h8 x w8 float32 in [0, 1]: probability that a pixel belongs to the main subject
    faces: list[Face] = field(default_factory=list)
    version: str = FEATURE_VERSION

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        faces = np.array([[*f.box, f.score] for f in self.faces], dtype=np.float32).reshape(-1, 5)
        np.savez_compressed(
            buf,
            size=np.array(self.size, dtype=np.int64),
            fmap=self.fmap.astype(np.float16),
            subject=self.subject.astype(np.float16),
            faces=faces,
            version=np.array(self.version),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageAnalysis:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            faces = [Face(Box(*map(float, row[:4])), float(row[4])) for row in z["faces"]]
            return cls(
                size=(int(z["size"][0]), int(z["size"][1])),
                fmap=z["fmap"].astype(np.float16),
                subject=z["subject"].astype(np.float32),
                faces=faces,
                version=str(z["version"]),
            )


def input_shape(width: int, height: int) -> tuple[int, int]:
    """Backbone input (W, H): short side INPUT_SHORT_SIDE, multiples of 32, long side capped."""
    aspect = width / max(height, 1)
    if aspect >= 1:
        w = min(INPUT_MAX_LONG_SIDE, max(32, round(INPUT_SHORT_SIDE * aspect / 32) * 32))
        h = max(32, min(INPUT_SHORT_SIDE, round(w / aspect / 32) * 32))
    else:
        h = min(INPUT_MAX_LONG_SIDE, max(32, round(INPUT_SHORT_SIDE / aspect / 32) * 32))
        w = max(32, min(INPUT_SHORT_SIDE, round(h * aspect / 32) * 32))
    return w, h


def backbone_input(pixels: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x h x w normalized tensor (the whole frame, slightly stretched to /32)."""
    w, h = input_shape(pixels.shape[1], pixels.shape[0])
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return backbone.normalize(x)


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


@lru_cache(maxsize=1)
def load_head() -> FeatureHead:
    head = FeatureHead()
    if not HEAD_FILE.exists():
        raise FileNotFoundError(f"{HEAD_FILE} is missing: run scripts/train_feature_head.py")
    head.load_state_dict(torch.load(HEAD_FILE, map_location="cpu", weights_only=True))
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head


_lock = threading.Lock()


def analyze(decoded: DecodedImage, with_faces: bool = True) -> ImageAnalysis:
    """Run the backbone, the feature head and the face detector on one decoded image."""
    tune_allocator()
    net, head = backbone.load_fast_backbone(), load_head()
    x = backbone_input(decoded.pixels)
    with torch.inference_mode():
        fmap, logits = head(net(x))
    subject = torch.sigmoid(logits[0]).numpy().astype(np.float32)
    faces = detect_faces(decoded.pixels) if with_faces else []
    return ImageAnalysis(decoded.size, fmap[0].numpy().astype(np.float16), subject, faces)


def set_single_threaded() -> None:
    """Worker processes share the cores: one thread each for torch and OpenCV is fastest overall."""
    with _lock:
        torch.set_num_threads(1)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        try:
            import cv2

            cv2.setNumThreads(1)
        except ImportError:  # pragma: no cover - OpenCV is a dependency
            pass


# --- per-candidate features ------------------------------------------------------------------------------------

POOL_SIZE = 5


def _sampling_grid(boxes: torch.Tensor, k: int) -> torch.Tensor:
    """N x k x k x 2 grid_sample coordinates of k x k cell centres inside each normalized box."""
    steps = (torch.arange(k, dtype=torch.float32) + 0.5) / k
    xs = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * steps  # N x k
    ys = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * steps
    gx = xs[:, None, :].expand(-1, k, -1)
    gy = ys[:, :, None].expand(-1, -1, k)
    return torch.stack([gx, gy], dim=-1) * 2 - 1


def roi_rod_pool(fmap: torch.Tensor, boxes: torch.Tensor, k: int = POOL_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """RoI pooling (inside the crop) and RoD pooling (the whole frame with the crop zeroed out).

    ``fmap``: C x h x w; ``boxes``: N x 4 normalized. Returns two N x C x k x k tensors. RoD follows GAIC's
    RoDAlign: what a crop throws away matters as much as what it keeps.
    """
    n = boxes.shape[0]
    src = fmap[None].expand(n, -1, -1, -1)
    roi = F.grid_sample(src, _sampling_grid(boxes, k), mode="bilinear", align_corners=False)
    # RoD: average of the map outside the box, per cell of a k x k grid over the full frame.
    h, w = fmap.shape[-2:]
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] <= boxes[:, 2:3])  # N x w
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] <= boxes[:, 3:4])  # N x h
    outside = 1.0 - (inside_y[:, :, None] & inside_x[:, None, :]).float()  # N x h x w
    masked = fmap[None] * outside[:, None]
    rod = F.adaptive_avg_pool2d(masked, k)
    share = F.adaptive_avg_pool2d(outside[:, None], k).clamp_min(1e-6)
    return roi, rod / share * (share > 1e-3)


class IntegralMap:
    """Summed-area table of a map, for O(1) box sums at any normalized box."""

    def __init__(self, values: np.ndarray) -> None:
        self.h, self.w = values.shape
        table = np.zeros((self.h + 1, self.w + 1), dtype=np.float64)
        table[1:, 1:] = values.astype(np.float64).cumsum(0).cumsum(1)
        self.table = table
        self.total = float(table[-1, -1])

    def box_sum(self, boxes: np.ndarray) -> np.ndarray:
        """Sum inside each normalized box (N x 4), with bilinear weighting of partial cells."""
        x0 = boxes[:, 0] * self.w
        x1 = boxes[:, 2] * self.w
        y0 = boxes[:, 1] * self.h
        y1 = boxes[:, 3] * self.h
        return self._at(x1, y1) - self._at(x0, y1) - self._at(x1, y0) + self._at(x0, y0)

    def _at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Table value at fractional cell coordinates (bilinear between table corners)."""
        x = np.clip(x, 0, self.w)
        y = np.clip(y, 0, self.h)
        xi = np.minimum(np.floor(x).astype(int), self.w - 1)
        yi = np.minimum(np.floor(y).astype(int), self.h - 1)
        fx, fy = x - xi, y - yi
        t = self.table
        return (
            t[yi, xi] * (1 - fx) * (1 - fy)
            + t[yi, xi + 1] * fx * (1 - fy)
            + t[yi + 1, xi] * (1 - fx) * fy
            + t[yi + 1, xi + 1] * fx * fy
        )
