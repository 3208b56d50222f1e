"""MobileNetV3-Small (Howard et al., "Searching for MobileNetV3", ICCV 2019), in plain torch.

torchvision does not import beside the torch build this project installs
(docs/pitfalls.md #7), so the network is defined here, following the paper's
Table 2: a 16-channel hard-swish stem, eleven inverted-residual blocks with
squeeze-and-excitation where the paper has it, a 576-channel 1x1 conv, global
pooling and a 1024-unit head. Every op exports to ONNX opset 17 and parses in
TensorRT. Needs the ``train`` extra (torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def _divisible(channels: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor``, never below 90 % of the value (as the paper)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


@dataclass(frozen=True)
class Block:
    """One inverted-residual block of Table 2."""

    kernel: int
    expanded: int
    out: int
    squeeze: bool
    hard_swish: bool
    stride: int


SMALL = (
    Block(3, 16, 16, True, False, 2),
    Block(3, 72, 24, False, False, 2),
    Block(3, 88, 24, False, False, 1),
    Block(5, 96, 40, True, True, 2),
    Block(5, 240, 40, True, True, 1),
    Block(5, 240, 40, True, True, 1),
    Block(5, 120, 48, True, True, 1),
    Block(5, 144, 48, True, True, 1),
    Block(5, 288, 96, True, True, 2),
    Block(5, 576, 96, True, True, 1),
    Block(5, 576, 96, True, True, 1),
)


def _conv(
    inputs: int,
    outputs: int,
    kernel: int,
    *,
    stride: int = 1,
    groups: int = 1,
    activation: nn.Module | None,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(outputs),
    ]
    if activation is not None:
        layers.append(activation)
    return nn.Sequential(*layers)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = _divisible(channels / 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale: torch.Tensor = self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))
        return x * scale


class _InvertedResidual(nn.Module):
    def __init__(self, inputs: int, block: Block) -> None:
        super().__init__()

        def activation() -> nn.Module:
            return nn.Hardswish(inplace=True) if block.hard_swish else nn.ReLU(inplace=True)

        layers: list[nn.Module] = []
        if block.expanded != inputs:
            layers.append(_conv(inputs, block.expanded, 1, activation=activation()))
        layers.append(
            _conv(
                block.expanded,
                block.expanded,
                block.kernel,
                stride=block.stride,
                groups=block.expanded,
                activation=activation(),
            )
        )
        if block.squeeze:
            layers.append(_SqueezeExcite(block.expanded))
        layers.append(_conv(block.expanded, block.out, 1, activation=None))
        self.body = nn.Sequential(*layers)
        self.residual = block.stride == 1 and inputs == block.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return x + out if self.residual else out


class MobileNetV3Small(nn.Module):
    """Images (N x 3 x H x W, normalised) -> class logits."""

    def __init__(self, classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(3, 16, 3, stride=2, activation=nn.Hardswish(inplace=True))]
        channels = 16
        for block in SMALL:
            layers.append(_InvertedResidual(channels, block))
            channels = block.out
        layers.append(_conv(channels, 576, 1, activation=nn.Hardswish(inplace=True)))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(576, 1024),
            nn.Hardswish(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(1024, classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(self.pool(self.features(x)), 1)
        logits: torch.Tensor = self.classifier(pooled)
        return logits


class WithSoftmax(nn.Module):
    """What is exported: class probabilities, as the edge expects."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(x), dim=1)
