"""Export an untrained MobileNetV3-small-like CNN: a stand-in of realistic cost.

It answers nothing meaningful (random weights; its card says placeholder) and
exists so benchmarks can show how the edge pipeline behaves with a classifier
as expensive as a real one (224x224 input, depthwise-separable blocks), before
the trained congestion CNN ships.

    python -m roadsense.models.training.congestion.standin_cnn --out /tmp/standin

Needs the ``train`` extra (torch, onnx).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from roadsense.models.card import ModelCard, card_path_for, sha256_file
from roadsense.models.training.congestion.placeholder_cnn import INPUT as PLACEHOLDER_INPUT
from roadsense.models.training.congestion.placeholder_cnn import LABELS, OPSET

# The placeholder's preprocessing at MobileNet's input size.
INPUT = PLACEHOLDER_INPUT.model_copy(update={"width": 224, "height": 224})


def _block(inp: int, out: int, stride: int, expand: int) -> nn.Sequential:
    hidden = inp * expand
    return nn.Sequential(
        nn.Conv2d(inp, hidden, 1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.Hardswish(),
        nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
        nn.BatchNorm2d(hidden),
        nn.Hardswish(),
        nn.Conv2d(hidden, out, 1, bias=False),
        nn.BatchNorm2d(out),
    )


class _StandIn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, 16, 3, 2, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.Hardswish(),
        ]
        plan = [(16, 16, 2, 1), (16, 24, 2, 4), (24, 24, 1, 3), (24, 40, 2, 3), (40, 40, 1, 3)]
        plan += [(40, 48, 1, 3), (48, 96, 2, 6), (96, 96, 1, 6)]
        layers += [_block(i, o, s, e) for i, o, s, e in plan]
        layers += [nn.Conv2d(96, 576, 1, bias=False), nn.Hardswish(), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(576, len(LABELS))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(torch.flatten(self.features(images), 1))
        probabilities: torch.Tensor = torch.softmax(logits, dim=1)
        return probabilities


def export(out_dir: Path) -> Path:
    """Write standin.onnx and its card into out_dir; return the ONNX path."""
    torch.manual_seed(0)
    model = _StandIn().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "standin.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, INPUT.height, INPUT.width),),
        str(onnx_path),
        input_names=[INPUT.name],
        output_names=["probabilities"],
        dynamic_axes={INPUT.name: {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    card = ModelCard(
        name="standin-mobilenetv3-small-like",
        version="0.0.0-standin",
        placeholder=True,
        description="UNTRAINED cost stand-in (random weights) shaped like MobileNetV3-small at "
        "224x224, for benchmarks only. Its output means nothing.",
        labels=LABELS,
        input=INPUT,
        output_name="probabilities",
        min_batch=1,
        max_batch=32,
        onnx_file=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        opset=OPSET,
    )
    card_path_for(onnx_path).write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    return onnx_path


def main() -> None:
    parser = argparse.ArgumentParser(description="Export the untrained cost stand-in CNN.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    print(export(parser.parse_args().out))


if __name__ == "__main__":
    main()
