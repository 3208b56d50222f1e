"""Export the EfficientNet-Lite0 congestion classifier: probabilities and a class
activation map, one ONNX, checked against torch.

The exported graph: frozen backbone -> last-convolution features F (N x 1280 x H/32 x W/32)
-> global average -> the linear head folded onto raw features -> probabilities (softmax for
the multinomial head, cumulative-logit differences for the ordinal one). The second
output is the class activation map (Zhou et al. 2016) of the predicted class: the head's
weights of that class times F, summed over channels (N x H/32 x W/32). With ``pooling =
"stages"`` the head also reads the averages of the stage ends, and the map is drawn on the
finer grid of the stride-16 stages (N x H/16 x W/16): each map's evidence (its weights
times its features) is averaged down onto that grid (stride 8) or repeated onto it (stride
32) and added, so the map's mean is still the class score less its bias, and a vehicle
is placed to within 16 pixels of the input instead of 32. For the ordinal head all
classes share one score, so the map is that score's evidence: where the features push the
level up. No gradients, only a matmul, so ONNX Runtime and TensorRT run it alike.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional

from roadsense.models.card import InputSpec, ModelCard, card_path_for, sha256_file
from roadsense.models.preprocess import Frame, frames_to_tensor
from roadsense.models.training.congestion.efficientnet_lite import (
    LAST_STRIDE,
    POOLED_CHANNELS,
    STAGE_STRIDES,
    EfficientNetLite0,
    Pooling,
    pooled,
)
from roadsense.models.training.congestion.head import LinearHead

logger = logging.getLogger(__name__)

OPSET = 17
OUTPUT_NAME = "probabilities"
CAM_NAME = "activation_map"
MAX_DIFFERENCE = 1e-4


POOLED = {"last": "last convolution", "stages": "stage ends and last convolution"}


def map_stride(pooling: Pooling) -> int:
    """Input pixels per cell of the activation map, per side: 16 when the head reads the
    stage ends (the finest grid every stage reaches without inventing detail), else 32."""
    return 16 if pooling == "stages" else LAST_STRIDE


class ExportError(RuntimeError):
    """The exported ONNX does not reproduce torch."""


class CongestionWithMap(nn.Module):
    """Frames -> (probabilities, activation map of the predicted class)."""

    weight: torch.Tensor
    bias: torch.Tensor
    thresholds: torch.Tensor

    def __init__(
        self, backbone: EfficientNetLite0, head: LinearHead, pooling: Pooling = "last"
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.stages = pooling == "stages"
        self.channels = POOLED_CHANNELS[pooling]
        weight, bias = head.folded()
        self.ordinal = head.family == "ordinal"
        self.register_buffer("weight", torch.from_numpy(weight))
        self.register_buffer("bias", torch.from_numpy(bias))
        self.register_buffer("thresholds", torch.from_numpy(head.thresholds))
        self.classes = len(head.thresholds) + 1 if self.ordinal else weight.shape[0]
        self.map_stride = map_stride(pooling)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.backbone.feature_maps(x, self.stages)
        features = maps[-1]
        scores = pooled(maps) @ self.weight.T + self.bias
        if self.ordinal:
            above = torch.sigmoid(scores - self.thresholds[None, :])
            ones = torch.ones_like(scores)
            cumulative = torch.cat([ones, above, torch.zeros_like(scores)], dim=1)
            probabilities = (cumulative[:, :-1] - cumulative[:, 1:]).clamp_min(0.0)
            chosen = self.weight.expand(x.shape[0], -1)
        else:
            probabilities = torch.softmax(scores, dim=1)
            top = probabilities.amax(dim=1, keepdim=True)
            chosen = (probabilities == top).to(features.dtype) @ self.weight
        return probabilities, self._activation(maps, chosen)

    def _activation(self, maps: list[torch.Tensor], chosen: torch.Tensor) -> torch.Tensor:
        """Each map's channels weighted by ``chosen``, summed, on the ``map_stride`` grid
        (averaged down from a finer map, repeated up from a coarser one: means are kept)."""
        strides = (*STAGE_STRIDES, LAST_STRIDE) if self.stages else (LAST_STRIDE,)
        activation: torch.Tensor | None = None
        start = 0
        for feature_map, stride, channels in zip(maps, strides, self.channels, strict=True):
            weights = chosen[:, start : start + channels, None, None]
            start += channels
            evidence = (feature_map * weights).sum(dim=1, keepdim=True)
            if stride < self.map_stride:
                evidence = functional.avg_pool2d(evidence, self.map_stride // stride)
            elif stride > self.map_stride:
                evidence = functional.interpolate(
                    evidence, scale_factor=stride // self.map_stride, mode="nearest"
                )
            activation = evidence[:, 0] if activation is None else activation + evidence[:, 0]
        assert activation is not None
        return activation


def export_lite(
    backbone: EfficientNetLite0,
    head: LinearHead,
    spec: InputSpec,
    out_dir: Path,
    *,
    name: str,
    version: str,
    classes: list[str],
    temperature: float,
    description: str,
    reference_images: list[Frame],
    settings: dict[str, Any],
    training_data: dict[str, Any],
    evaluation: dict[str, Any],
    pooling: Pooling = "last",
) -> Path:
    """Write ``<name>.onnx`` and its card; refuse if ONNX Runtime differs from torch on
    either output by more than 1e-4 on ``reference_images``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    if pooling == "stages" and (spec.width % 32 or spec.height % 32):
        raise ExportError(
            f"pooling 'stages' needs an input whose width and height are multiples of 32 "
            f"(the stage grids then line up on the map's); got {spec.width}x{spec.height}"
        )
    model = CongestionWithMap(backbone, head, pooling).eval()
    example = torch.zeros(2, 3, spec.height, spec.width)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=[spec.name],
        output_names=[OUTPUT_NAME, CAM_NAME],
        dynamic_axes={spec.name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}, CAM_NAME: {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,  # the default exporter needs onnxscript (docs/pitfalls.md #6)
    )
    batch = frames_to_tensor(reference_images[:16], spec)
    with torch.no_grad():
        expected = [t.numpy() for t in model(torch.from_numpy(batch))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME, CAM_NAME], {spec.name: batch})
    differences = [
        float(np.max(np.abs(np.asarray(g) - e))) for g, e in zip(got, expected, strict=True)
    ]
    # The map is in feature units (not 0..1): compare it relative to its own scale.
    relative_map = differences[1] / max(1.0, float(np.max(np.abs(expected[1]))))
    if differences[0] > MAX_DIFFERENCE or relative_map > MAX_DIFFERENCE:
        raise ExportError(
            f"ONNX Runtime differs from torch by {differences[0]:.2e} (probabilities), "
            f"{relative_map:.2e} (map, relative); limit {MAX_DIFFERENCE}"
        )
    card = ModelCard(
        name=name,
        version=version,
        placeholder=False,
        description=description,
        labels=classes,
        input=spec,
        output_name=OUTPUT_NAME,
        cam_output_name=CAM_NAME,
        temperature=temperature,
        min_batch=1,
        max_batch=32,
        onnx_file=path.name,
        onnx_sha256=sha256_file(path),
        opset=OPSET,
        architecture=f"EfficientNet-Lite0 (ImageNet weights, frozen) + {head.family} linear "
        f"head on pooled features ({POOLED[pooling]}); second output: class activation map",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        onnx_torch_max_abs_difference=differences[0],
        settings={
            **settings,
            "pooling": pooling,
            "head_family": head.family,
            "onnx_torch_activation_map_relative_difference": relative_map,
            "activation_map_stride": map_stride(pooling),
        },
        training_data=training_data,
        evaluation=evaluation,
    )
    card_path_for(path).write_text(
        json.dumps(card.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )
    logger.info("exported %s (ONNX vs torch %.2e)", path, differences[0])
    return path
