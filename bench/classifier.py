"""`roadsense bench classifier`: the congestion CNN in ONNX Runtime vs torch eager.

By default the shipped model at its card's input size: ONNX Runtime runs the shipped ONNX
itself (both outputs, as the edge does); torch eager runs the same architecture (the card
says which: EfficientNet-Lite0 with its head and activation map, or MobileNetV3-Small)
with the ImageNet backbone weights and a zero head (speed does not depend on the head).
Another ``--width/--height`` benches that architecture exported at that size in both
runtimes. Inputs are real frames
of the shipped clip, preprocessed once. For each batch size, images per second over at
least ``min_s`` seconds after a warm-up, ONNX Runtime (CPU, default threads, spinning off
as on the edge) and torch eager (no grad); ``ratio_bN`` = ONNX Runtime / torch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from roadsense.bench.edge import decode_all
from roadsense.bench.timing import images_per_second
from roadsense.models.card import InputSpec, load_card
from roadsense.models.preprocess import frames_to_tensor
from roadsense.models.shipped import DEFAULT_CNN, SAMPLE_CLIP
from roadsense.models.training.congestion.mobilenet import MobileNetV3Small, WithSoftmax
from roadsense.models.training.congestion.train import OPSET

BATCHES = (1, 4, 8)


def _network(architecture: str, classes: int) -> tuple[str, torch.nn.Module]:
    """The card's architecture in torch, the ImageNet backbone where installed."""
    if architecture.startswith("EfficientNet-Lite0"):
        from roadsense.models.training.congestion.efficientnet_lite import (
            PretrainedWeightsError,
            pretrained_lite0,
        )
        from roadsense.models.training.congestion.export_lite import CongestionWithMap
        from roadsense.models.training.congestion.head import LinearHead

        zeros = np.zeros
        head = LinearHead(
            "multinomial",
            zeros((classes, 1280), np.float32),
            zeros(classes, np.float32),
            zeros(0, np.float32),
            zeros(1280, np.float32),
            np.ones(1280, np.float32),
        )
        try:
            # The ImageNet weights the shipped backbone has, so both runtimes compute on
            # the same numbers (random weights are the fallback without the package).
            backbone = pretrained_lite0()
        except PretrainedWeightsError:
            from roadsense.models.training.congestion.efficientnet_lite import EfficientNetLite0

            backbone = EfficientNetLite0().eval()
        return "EfficientNet-Lite0", CongestionWithMap(backbone, head).eval()
    return "MobileNetV3-Small", WithSoftmax(MobileNetV3Small(classes)).eval()


def run_classifier_bench(
    model: Path = DEFAULT_CNN,
    width: int | None = None,
    height: int | None = None,
    min_s: float = 2.0,
) -> dict[str, Any]:
    """Images per second by batch size in both runtimes (see the module doc)."""
    card = load_card(model)
    width, height = width or card.input.width, height or card.input.height
    spec: InputSpec = card.input.model_copy(update={"width": width, "height": height})
    frames = decode_all(SAMPLE_CLIP)[: max(BATCHES)]
    name, network = _network(card.architecture, len(card.labels))
    shipped = (width, height) == (card.input.width, card.input.height)
    figures: dict[str, Any] = {
        "model": name,
        "onnx": str(model) if shipped else f"{name} exported at {width}x{height}",
        "width": width,
        "height": height,
    }
    with tempfile.TemporaryDirectory(prefix="roadsense-bench-") as workdir:
        path = model
        if not shipped:
            path = Path(workdir) / "cnn.onnx"
            torch.onnx.export(
                network,
                (torch.zeros(1, 3, height, width),),
                str(path),
                input_names=[spec.name],
                dynamic_axes={spec.name: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in session.get_outputs()]
        for batch in BATCHES:
            tensor = frames_to_tensor(frames[:batch], spec)
            torch_input = torch.from_numpy(np.ascontiguousarray(tensor))

            def onnx_run(t: np.ndarray[Any, Any] = tensor) -> None:
                session.run(outputs, {spec.name: t})

            def torch_run(t: torch.Tensor = torch_input) -> None:
                with torch.no_grad():
                    network(t)

            onnx_rate = images_per_second(onnx_run, batch, min_s)
            torch_rate = images_per_second(torch_run, batch, min_s)
            figures[f"onnxruntime_img_s_b{batch}"] = round(onnx_rate, 1)
            figures[f"torch_eager_img_s_b{batch}"] = round(torch_rate, 1)
            figures[f"ratio_b{batch}"] = round(onnx_rate / torch_rate, 2)
    return figures
