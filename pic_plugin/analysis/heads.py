"""The networks behind ``features``: the pretrained backbone's input, our trained feature head, and
GAIC-style RoI + RoD pooling of candidate crops.

The head (``pic_plugin/data/feature_head.pt``, retrained by ``scripts/train_feature_head.py``) fuses the
backbone's stride 8/16/32 maps and reduces them to ``FEATURE_CHANNELS`` channels *before* any pooling (GAIC's
lesson: reducing after pooling is slower), and predicts where the main subject is, trained on human subject
masks.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pic_plugin.analysis import backbone
from pic_plugin.analysis.features import FEATURE_CHANNELS, input_shape
from pic_plugin.core.paths import DATA_DIR

HEAD_FILE = DATA_DIR / "feature_head.pt"


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


def backbone_input(pixels: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 1 x 3 x h x w normalized tensor (the whole frame, slightly stretched to /32)."""
    w, h = input_shape(pixels.shape[1], pixels.shape[0])
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return backbone.normalize(x)


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


# --- per-candidate pooling -------------------------------------------------------------------------------------

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


