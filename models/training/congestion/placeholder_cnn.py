"""Export the placeholder congestion CNN shipped until a trained one lands.

The placeholder is NOT trained on labelled data (none exists offline, see
shared/data/README.md §3). It is a tiny CNN with hand-set weights: Sobel
filters measure edge energy on the road image (more vehicles, more edges) and
the energy is mapped onto five ordinal classes whose centres are quantiles of
that energy over the frames of a calibration clip. It exercises the whole
pipeline with output that moves with the scene; its card says
``placeholder: true`` and its reports must not be read as measurements.

    python -m roadsense.models.training.congestion.placeholder_cnn \
        --video clip.avi --out models/artifacts

Needs the ``train`` extra (torch, onnx) and OpenCV.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from roadsense.models.card import InputSpec, ModelCard, card_path_for, sha256_file
from roadsense.models.congestion_labels import CONGESTION_LABELS

LABELS = list(CONGESTION_LABELS)
INPUT = InputSpec(
    name="images",
    width=96,
    height=96,
    color_order="RGB",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    resize="stretch",
    dtype="float32",
    layout="NCHW",
)
OPSET = 17
MAX_BATCH = 32
_LUMA = (0.299, 0.587, 0.114)


class _EdgeEnergyNet(nn.Module):
    """Sobel edge energy → ordinal class probabilities."""

    centres: torch.Tensor

    def __init__(self, centres: list[float], width: float) -> None:
        super().__init__()
        sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        kernels = torch.zeros(2, 3, 3, 3)
        for channel in range(3):
            # The input is normalised per channel; undo the std to get luma gradients.
            scale = _LUMA[channel] * INPUT.std[channel]
            kernels[0, channel] = sobel_x * scale
            kernels[1, channel] = sobel_x.T * scale
        self.edges = nn.Conv2d(3, 2, kernel_size=3, bias=False)
        self.edges.weight = nn.Parameter(kernels, requires_grad=False)
        self.register_buffer("centres", torch.tensor(centres).reshape(1, -1))
        self.width = width

    def energy(self, images: torch.Tensor) -> torch.Tensor:
        energy: torch.Tensor = self.edges(images).abs().mean(dim=(1, 2, 3)).unsqueeze(1)
        return energy

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        distance = (self.energy(images) - self.centres) / self.width
        return torch.softmax(-distance * distance, dim=1)


def _frames_as_input(video: Path, step: int) -> torch.Tensor:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise SystemExit(f"{video}: cannot open video")
    blobs = []
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            blobs.append(_preprocess(frame))
        index += 1
    capture.release()
    if not blobs:
        raise SystemExit(f"{video}: no frames decoded")
    return torch.from_numpy(np.concatenate(blobs))


def _preprocess(frame_bgr: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (INPUT.width, INPUT.height), interpolation=cv2.INTER_LINEAR)
    scaled = (resized.astype(np.float32) / 255.0 - np.array(INPUT.mean, np.float32)) / np.array(
        INPUT.std, np.float32
    )
    return scaled.transpose(2, 0, 1)[np.newaxis]


def export(video: Path, out_dir: Path, version: str) -> Path:
    """Calibrate on the clip, export ONNX and write its card; return the ONNX path."""
    frames = _frames_as_input(video, step=5)
    probe = _EdgeEnergyNet([0.0] * len(LABELS), 1.0)
    with torch.no_grad():
        energy = probe.energy(frames).squeeze(1).numpy()
    quantiles = [0.05, 0.3, 0.55, 0.8, 0.97]
    centres = [float(v) for v in np.quantile(energy, quantiles)]
    width = float(np.std(energy)) or 1.0
    model = _EdgeEnergyNet(centres, width).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "congestion-placeholder.onnx"
    torch.onnx.export(
        model,
        (frames[:1],),
        str(onnx_path),
        input_names=[INPUT.name],
        output_names=["probabilities"],
        dynamic_axes={INPUT.name: {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,  # the default exporter needs onnxscript (docs/pitfalls.md #6)
    )
    card = ModelCard(
        name="congestion-placeholder",
        version=version,
        placeholder=True,
        description=(
            "PLACEHOLDER until the congestion CNN is trained: not trained on labelled data. "
            "Hand-set Sobel edge-energy CNN; class centres are edge-energy quantiles "
            f"{quantiles} over every 5th frame of {video.name}. Output moves with the "
            "amount of texture in the road image and is not a measurement of congestion."
        ),
        labels=LABELS,
        input=INPUT,
        output_name="probabilities",
        min_batch=1,
        max_batch=MAX_BATCH,
        onnx_file=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        opset=OPSET,
    )
    card_path_for(onnx_path).write_text(
        json.dumps(card.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )
    return onnx_path


def main() -> None:
    parser = argparse.ArgumentParser(description="Export the placeholder congestion CNN.")
    parser.add_argument("--video", type=Path, required=True, help="calibration clip")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--version", default="0.1.0-placeholder", help="model version")
    args = parser.parse_args()
    print(export(args.video, args.out, args.version))


if __name__ == "__main__":
    main()
