"""The Classifier interface and the registry of its backends.

A backend is a module in ``roadsense.edge.backends`` that subclasses
``Classifier`` and registers itself under a key with ``register``. Its
constructor loads the model, checks it against the card and runs one warm-up
inference, so a wrong model fails at start (``ModelLoadError``), not on the
first real frame.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from roadsense.core.errors import ModelLoadError, UnknownBackendError
from roadsense.models.calibration import apply_temperature
from roadsense.models.card import ModelCard, load_card
from roadsense.models.preprocess import Frame, frames_to_tensor

logger = logging.getLogger(__name__)

Probabilities = npt.NDArray[np.float32]
"""Class probabilities: batch x classes, rows summing to 1, in card label order."""
ActivationMaps = npt.NDArray[np.float32]
"""Class activation maps of the predicted classes: batch x h x w (the model's grid)."""


class Classifier:
    """A congestion classifier: BGR frames in, class probabilities out."""

    key: str = ""

    def __init__(self, model_path: Path, card: ModelCard) -> None:
        self.model_path = model_path
        self.card = card

    @property
    def labels(self) -> list[str]:
        """Class labels in output order."""
        return list(self.card.labels)

    @property
    def version(self) -> str:
        """The model's version (its card's)."""
        return self.card.version

    @property
    def max_batch(self) -> int:
        """Largest batch one ``classify`` call takes."""
        return self.card.max_batch

    def _infer(self, tensor: npt.NDArray[np.float32], outputs: list[str]) -> list[Any]:
        """Run the model on a preprocessed batch; the named outputs, in order (every
        backend implements it; a stand-in that overrides ``classify`` needs none)."""
        raise NotImplementedError(f"{type(self).__name__} runs no model")

    def classify(self, frames: Sequence[Frame]) -> Probabilities:
        """Classify up to ``max_batch`` frames; one calibrated probability row per frame."""
        tensor = self._tensor(frames)
        (probabilities,) = self._infer(tensor, [self.card.output_name])
        return self._check_output(np.asarray(probabilities), len(frames))

    def explain(self, frames: Sequence[Frame]) -> tuple[Probabilities, ActivationMaps]:
        """Calibrated probabilities and the class activation map of each frame's
        predicted class; ModelLoadError for a model without that output."""
        if self.card.cam_output_name is None:
            raise ModelLoadError(
                f"{self.model_path}: the model has no class activation map output "
                "(its card names no cam_output_name)"
            )
        tensor = self._tensor(frames)
        probabilities, maps = self._infer(
            tensor, [self.card.output_name, self.card.cam_output_name]
        )
        checked = self._check_output(np.asarray(probabilities), len(frames))
        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim != 3 or maps.shape[0] != len(frames):
            raise ModelLoadError(
                f"{self.model_path}: activation map shape {maps.shape}, expected "
                f"({len(frames)}, h, w)"
            )
        return checked, maps

    def _tensor(self, frames: Sequence[Frame]) -> npt.NDArray[np.float32]:
        if not 1 <= len(frames) <= self.max_batch:
            raise ValueError(f"batch of {len(frames)} frames, allowed 1..{self.max_batch}")
        return frames_to_tensor(frames, self.card.input)

    def close(self) -> None:
        """Release runtime resources."""

    def _check_output(self, probabilities: npt.NDArray[np.float32], batch: int) -> Probabilities:
        expected = (batch, len(self.card.labels))
        if probabilities.shape != expected:
            raise ModelLoadError(
                f"{self.model_path}: output shape {probabilities.shape}, card expects {expected}"
            )
        # One place for every backend: the card's temperature (models/calibration.py).
        return apply_temperature(
            probabilities.astype(np.float32, copy=False), self.card.temperature
        )


ClassifierFactory = Callable[[Path, ModelCard, dict[str, object]], Classifier]
_REGISTRY: dict[str, ClassifierFactory] = {}
# Backend modules, imported on demand so their optional runtimes stay optional.
BACKEND_MODULES = {
    "onnxruntime": "roadsense.edge.backends.onnxruntime",
    "tensorrt": "roadsense.edge.backends.tensorrt",
}
AUTO = "auto"
"""TensorRT where it loads, else ONNX Runtime; the log says which and why."""


def register(key: str) -> Callable[[ClassifierFactory], ClassifierFactory]:
    """Class decorator: make a backend available under ``key``."""

    def decorate(factory: ClassifierFactory) -> ClassifierFactory:
        _REGISTRY[key] = factory
        return factory

    return decorate


def available_backends() -> list[str]:
    """Keys a configuration may name."""
    return sorted([*BACKEND_MODULES, AUTO])


def create_classifier(
    key: str, model_path: str | Path, options: dict[str, object] | None = None
) -> Classifier:
    """Load the model with the backend registered under ``key``."""
    if key == AUTO:
        try:
            return create_classifier("tensorrt", model_path, options)
        except ModelLoadError as err:
            logger.info("classifier backend auto: not TensorRT (%s); using ONNX Runtime", err)
            return create_classifier("onnxruntime", model_path, options)
    if key not in BACKEND_MODULES:
        raise UnknownBackendError(
            f"unknown classifier backend {key!r}; known: {', '.join(available_backends())}"
        )
    importlib.import_module(BACKEND_MODULES[key])
    path = Path(model_path)
    card = load_card(path)
    classifier = _REGISTRY[key](path, card, dict(options or {}))
    logger.info(
        "classifier backend %s loaded %s (model %s%s)",
        key,
        path.name,
        card.version,
        ", PLACEHOLDER: not a trained model" if card.placeholder else "",
    )
    return classifier
