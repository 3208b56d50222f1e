"""ONNX Runtime backend of the classifier and the detector (CPU, or CUDA where the provider
exists)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from roadsense.core.errors import ModelLoadError
from roadsense.edge.backends.classifier import Classifier, register
from roadsense.edge.backends.detector import Detector, register_detector
from roadsense.models.card import ModelCard
from roadsense.models.detection.card import DetectorCard


def _session(model_path: Path, options: dict[str, object]) -> ort.InferenceSession:
    """A session on the model with the configured threads, spinning off."""
    session_options = ort.SessionOptions()
    threads = options.get("intra_op_threads", 0)
    if not isinstance(threads, int) or threads < 0:
        raise ModelLoadError(f"intra_op_threads must be a non-negative integer, got {threads!r}")
    session_options.intra_op_num_threads = threads
    # Spinning threads steal the CPU the capture threads need (docs/pitfalls.md).
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [
        p
        for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
        if p in ort.get_available_providers()
    ]
    try:
        return ort.InferenceSession(
            str(model_path), sess_options=session_options, providers=providers
        )
    except Exception as err:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(f"{model_path}: ONNX Runtime cannot load the model: {err}") from err


class OnnxRuntimeClassifier(Classifier):
    """Runs the card's ONNX model with ONNX Runtime."""

    key = "onnxruntime"

    def __init__(self, model_path: Path, card: ModelCard, options: dict[str, object]) -> None:
        super().__init__(model_path, card)
        self._session = _session(model_path, options)
        self._check_io()
        warmup = np.zeros((card.input.height, card.input.width, 3), dtype=np.uint8)
        self.classify([warmup])

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        spec = self.card.input
        if spec.name not in inputs:
            raise ModelLoadError(
                f"{self.model_path}: no input named {spec.name!r} (model has {sorted(inputs)})"
            )
        shape = inputs[spec.name].shape
        if list(shape[1:]) != [3, spec.height, spec.width]:
            raise ModelLoadError(
                f"{self.model_path}: input shape {shape} does not match the card "
                f"(N, 3, {spec.height}, {spec.width})"
            )
        if inputs[spec.name].type != "tensor(float)":
            raise ModelLoadError(
                f"{self.model_path}: input type {inputs[spec.name].type}, card says float32"
            )
        outputs = [o.name for o in self._session.get_outputs()]
        for name in (self.card.output_name, self.card.cam_output_name):
            if name is not None and name not in outputs:
                raise ModelLoadError(f"{self.model_path}: no output named {name!r} (has {outputs})")

    def _infer(self, tensor: npt.NDArray[np.float32], outputs: list[str]) -> list[Any]:
        return list(self._session.run(outputs, {self.card.input.name: tensor}))


@register(OnnxRuntimeClassifier.key)
def _create(model_path: Path, card: ModelCard, options: dict[str, object]) -> Classifier:
    return OnnxRuntimeClassifier(model_path, card, options)


class OnnxRuntimeDetector(Detector):
    """Runs the card's vehicle detector with ONNX Runtime."""

    key = "onnxruntime"

    def __init__(self, model_path: Path, card: DetectorCard, options: dict[str, object]) -> None:
        super().__init__(model_path, card, options)
        self._session = _session(model_path, options)
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        if card.input.name not in inputs or card.output_name not in outputs:
            raise ModelLoadError(
                f"{model_path}: the card names input {card.input.name!r} and output "
                f"{card.output_name!r}; the model has {sorted(inputs)} and {outputs}"
            )
        shape = inputs[card.input.name]
        fixed = [d for d in shape[2:] if isinstance(d, int)]
        if fixed and fixed != [card.input.height, card.input.width]:
            raise ModelLoadError(
                f"{model_path}: input shape {shape} does not take the card's "
                f"{card.input.height}x{card.input.width}"
            )
        self.detect([np.zeros((card.input.height, card.input.width, 3), dtype=np.uint8)])

    def _infer(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        (output,) = self._session.run([self.card.output_name], {self.card.input.name: tensor})
        return np.asarray(output, dtype=np.float32)


@register_detector(OnnxRuntimeDetector.key)
def _create_detector(model_path: Path, card: DetectorCard, options: dict[str, object]) -> Detector:
    return OnnxRuntimeDetector(model_path, card, options)
