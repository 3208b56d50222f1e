"""`roadsense bench classifier`: the congestion CNN in ONNX Runtime vs torch eager.

The network is the project's MobileNetV3-Small at the given input size, with
the same (random) weights in both runtimes: speed does not depend on the
weights. Inputs are real frames of the shipped clip, preprocessed once. For
each batch size, images per second over at least ``min_s`` seconds after a
warm-up, for ONNX Runtime (CPU, default threads, spinning off as on the edge)
and torch eager (no grad); ``ratio_bN`` = ONNX Runtime / torch.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from roadsense.bench.edge import decode_all
from roadsense.edge.preprocess import frames_to_tensor
from roadsense.models.congestion_train import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    CnnSettings,
    input_spec,
)
from roadsense.models.mobilenet import MobileNetV3Small, WithSoftmax
from roadsense.models.shipped import SAMPLE_CLIP

BATCHES = (1, 4, 8)


def _rate(run: Callable[[], Any], batch: int, min_s: float) -> float:
    run()  # warm-up
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_s or done == 0:
        run()
        done += batch
    return done / elapsed


def run_classifier_bench(width: int = 224, height: int = 224, min_s: float = 2.0) -> dict[str, Any]:
    """Images per second by batch size in both runtimes (see the module doc)."""
    spec = input_spec(CnnSettings(width=width, height=height))
    frames = decode_all(SAMPLE_CLIP)[: max(BATCHES)]
    network = WithSoftmax(MobileNetV3Small(5)).eval()
    figures: dict[str, Any] = {"model": "MobileNetV3-Small", "width": width, "height": height}
    with tempfile.TemporaryDirectory(prefix="roadsense-bench-") as workdir:
        path = Path(workdir) / "cnn.onnx"
        torch.onnx.export(
            network,
            (torch.zeros(1, 3, height, width),),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for batch in BATCHES:
            tensor = frames_to_tensor(frames[:batch], spec)
            torch_input = torch.from_numpy(np.ascontiguousarray(tensor))

            def onnx_run(t: np.ndarray[Any, Any] = tensor) -> None:
                session.run([OUTPUT_NAME], {INPUT_NAME: t})

            def torch_run(t: torch.Tensor = torch_input) -> None:
                with torch.no_grad():
                    network(t)

            onnx_rate = _rate(onnx_run, batch, min_s)
            torch_rate = _rate(torch_run, batch, min_s)
            figures[f"onnxruntime_img_s_b{batch}"] = round(onnx_rate, 1)
            figures[f"torch_eager_img_s_b{batch}"] = round(torch_rate, 1)
            figures[f"ratio_b{batch}"] = round(onnx_rate / torch_rate, 2)
    return figures
