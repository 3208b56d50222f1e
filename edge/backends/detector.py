"""The Detector interface: frames in, vehicle boxes out, through the same backends as the
classifier (``roadsense.edge.backends.classifier``: ONNX Runtime, TensorRT).

A backend subclasses ``Detector``, runs the network on a batch of letterboxed frames
(``_infer``) and registers itself under its key with ``register_detector``. Everything
else is the card's and shared: the letterbox, the decoding, the vehicle-only classes and
the score threshold (``roadsense.models.detection``). The constructor loads, checks and
warms the model, so a wrong one fails at start with ``ModelLoadError``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import supervision as sv

from roadsense.core.errors import ModelLoadError, UnknownBackendError
from roadsense.edge.backends.classifier import AUTO, BACKEND_MODULES, available_backends
from roadsense.models.detection.card import DetectorCard, load_detector_card
from roadsense.models.detection.yolox import decode, letterbox
from roadsense.models.preprocess import Frame

logger = logging.getLogger(__name__)


class Detector:
    """A vehicle detector: BGR frames in, each frame's vehicles out (frame pixels)."""

    key: str = ""

    def __init__(self, model_path: Path, card: DetectorCard, options: dict[str, object]) -> None:
        self.model_path = model_path
        self.card = card
        threshold = options.get("score_threshold", card.thresholds.least)
        if not isinstance(threshold, float | int) or not 0 < threshold < 1:
            raise ModelLoadError(f"score_threshold must be within 0..1, got {threshold!r}")
        self.score_threshold = float(threshold)
        """Least score of a returned box: the card's support threshold where it has one
        (the camera's meter decides which weak boxes count), else its score threshold;
        less where an evaluation asks."""

    @property
    def version(self) -> str:
        """The model version a report carries."""
        return self.card.version

    @property
    def max_batch(self) -> int:
        """Largest batch one ``detect`` call takes."""
        return self.card.max_batch

    def _infer(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Raw output (N x anchors x 85) of a letterboxed batch (every backend has one)."""
        raise NotImplementedError(f"{type(self).__name__} runs no model")

    def detect(self, frames: Sequence[Frame]) -> list[sv.Detections]:
        """The vehicles of up to ``max_batch`` frames."""
        if not 1 <= len(frames) <= self.max_batch:
            raise ValueError(f"batch of {len(frames)} frames, allowed 1..{self.max_batch}")
        size = (self.card.input.height, self.card.input.width)
        prepared = [letterbox(frame, *size) for frame in frames]
        output = self._infer(np.stack([tensor for tensor, _ in prepared]))
        if output.ndim != 3 or output.shape[0] != len(frames):
            raise ModelLoadError(
                f"{self.model_path}: output shape {output.shape} for {len(frames)} frames"
            )
        return [
            decode(
                rows,
                size,
                scale,
                frame.shape[:2],
                score_threshold=self.score_threshold,
                nms_iou=self.card.nms_iou,
            )
            for rows, (_, scale), frame in zip(output, prepared, frames, strict=True)
        ]

    def close(self) -> None:
        """Release runtime resources."""


DetectorFactory = Callable[[Path, DetectorCard, dict[str, object]], Detector]
_REGISTRY: dict[str, DetectorFactory] = {}


def register_detector(key: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Decorator: make a detector backend available under ``key``."""

    def decorate(factory: DetectorFactory) -> DetectorFactory:
        _REGISTRY[key] = factory
        return factory

    return decorate


def create_detector(
    key: str, model_path: str | Path, options: dict[str, object] | None = None
) -> Detector:
    """Load the detector with the backend registered under ``key`` (``auto``: TensorRT
    where it loads, else ONNX Runtime)."""
    if key == AUTO:
        try:
            return create_detector("tensorrt", model_path, options)
        except ModelLoadError as err:
            logger.info("detector backend auto: not TensorRT (%s); using ONNX Runtime", err)
            return create_detector("onnxruntime", model_path, options)
    if key not in BACKEND_MODULES:
        raise UnknownBackendError(
            f"unknown detector backend {key!r}; known: {', '.join(available_backends())}"
        )
    importlib.import_module(BACKEND_MODULES[key])
    if key not in _REGISTRY:
        raise ModelLoadError(f"backend {key!r} has no detector")
    path = Path(model_path)
    card = load_detector_card(path)
    detector = _REGISTRY[key](path, card, dict(options or {}))
    logger.info("detector backend %s loaded %s (model %s)", key, path.name, card.version)
    return detector
