"""The congestion CNN as a cloud service (``CityService.ClassifyImage``): for city
cameras that have no edge box. One JPEG/PNG in, the calibrated probabilities out, and on
request the activation map drawn over the image. Same card, same preprocessing and the
same temperature as the edge (``models/``); the cloud never imports the edge.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from roadsense.core.errors import ModelLoadError, NotConfiguredError, RequestError
from roadsense.core.roi import Roi, crop_roi
from roadsense.models.calibration import apply_temperature
from roadsense.models.card import load_card
from roadsense.models.explain import heat_on_frame, overlay
from roadsense.models.preprocess import Frame, frames_to_tensor

logger = logging.getLogger(__name__)

PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"


class ImageRejectedError(RequestError):
    """An image sent for classification is empty, too large or not a JPEG/PNG."""


class NoActivationMapError(NotConfiguredError):
    """A heat map was asked of a model that has no activation-map output."""


@dataclass(frozen=True)
class Classification:
    """What the service answers for one image."""

    labels: list[str]
    probabilities: list[float]
    level: str
    confidence: float
    model_version: str
    heat_map_png: bytes = b""


def decode_image(data: bytes, max_image_bytes: int, max_pixels: int) -> Frame:
    """A JPEG/PNG as a BGR frame, or ImageRejectedError saying what is wrong."""
    if not data:
        raise ImageRejectedError("the image is empty (0 bytes)")
    if len(data) > max_image_bytes:
        raise ImageRejectedError(
            f"the image is {len(data)} bytes, more than the limit of {max_image_bytes}"
        )
    if not data.startswith((PNG, JPEG)):
        raise ImageRejectedError("not a JPEG or PNG image (unknown signature)")
    header = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if header is not None and header.size * 64 > max_pixels:
        raise ImageRejectedError(f"the image has more than {max_pixels} pixels")
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if frame is None or frame.size == 0:
        raise ImageRejectedError("the JPEG/PNG cannot be decoded (corrupt or truncated)")
    return np.asarray(frame, np.uint8)


def cpu_session(model: Path, threads: int) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for single images, spinning off (the API's threads)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(f"{model}: ONNX Runtime cannot load the model: {err}") from err


class ImageClassifier:
    """The card's ONNX model in ONNX Runtime, thread-safe, for single images."""

    def __init__(
        self, model: Path, max_image_bytes: int, max_pixels: int, threads: int = 1
    ) -> None:
        self.card = load_card(model)
        self.max_image_bytes = max_image_bytes
        self.max_pixels = max_pixels
        self._session = cpu_session(model, threads)
        self._lock = threading.Lock()
        logger.info("image classification serves %s %s", self.card.name, self.card.version)

    def decode(self, data: bytes) -> np.ndarray:
        """The image as a BGR frame, or ImageRejectedError saying what is wrong."""
        return decode_image(data, self.max_image_bytes, self.max_pixels)

    def classify(self, data: bytes, explain: bool = False) -> Classification:
        """Classify one image; ImageRejectedError for a bad one."""
        frame = self.decode(data)
        if not explain:
            return self._classify(frame, explain=False)[0]
        result, picture = self.explain_frame(frame, None)
        ok, encoded = cv2.imencode(".png", picture)
        return replace(result, heat_map_png=encoded.tobytes() if ok else b"")

    def explain_frame(self, frame: Frame, roi: Roi | None) -> tuple[Classification, Frame]:
        """Classify the frame's region of interest; the frame with the heat map drawn over it."""
        result, activation = self._classify(crop_roi(frame, roi), explain=True)
        assert activation is not None
        mass = heat_on_frame(activation, frame.shape, roi)
        caption = f"{result.level} {result.confidence:.2f}"
        return result, overlay(frame, mass, roi, caption)

    def _classify(
        self, frame: Frame, *, explain: bool
    ) -> tuple[Classification, npt.NDArray[np.float32] | None]:
        tensor = frames_to_tensor([frame], self.card.input)
        outputs = [self.card.output_name]
        if explain:
            if not self.card.cam_output_name:
                raise NoActivationMapError(
                    f"model {self.card.name} {self.card.version} has no activation map output"
                )
            outputs.append(self.card.cam_output_name)
        with self._lock:
            produced = self._session.run(outputs, {self.card.input.name: tensor})
        probabilities = apply_temperature(
            np.asarray(produced[0], np.float32), self.card.temperature
        )
        row = probabilities[0]
        result = Classification(
            labels=list(self.card.labels),
            probabilities=[float(p) for p in row],
            level=self.card.labels[int(row.argmax())],
            confidence=float(row.max()),
            model_version=self.card.version,
        )
        activation = np.asarray(produced[1], np.float32)[0] if explain else None
        return result, activation
