"""The vehicle detector as a cloud service (``CityService.MeasureImage``): for a still
from a camera without an edge box, or to check what a device measured. One JPEG/PNG in,
the vehicles in its road zone out, and on request the evidence drawn over it. Same
detector card, letterbox and decoding as the edge (``roadsense.models.detection``); one
still has no history, so nothing is called stopped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from roadsense.cloud.api.classify import cpu_session, decode_image
from roadsense.core.errors import RequestError
from roadsense.models.detection.card import load_detector_card
from roadsense.models.detection.still import draw_vehicles
from roadsense.models.detection.yolox import decode, letterbox
from roadsense.models.detection.zone import in_zone, occupancy, to_pixels, zone_mask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageMeasurement:
    """What the service answers for one image."""

    xyxy: list[tuple[float, float, float, float]]
    classes: list[str]
    scores: list[float]
    occupancy: float
    detector_version: str
    evidence_png: bytes = b""


class ImageMeasurer:
    """The card's detector in ONNX Runtime, thread-safe, for single images."""

    def __init__(
        self, model: Path, max_image_bytes: int, max_pixels: int, threads: int = 1
    ) -> None:
        self.card = load_detector_card(model)
        self.max_image_bytes = max_image_bytes
        self.max_pixels = max_pixels
        self._session = cpu_session(model, threads)
        self._lock = threading.Lock()
        logger.info("image measurement serves detector %s", self.card.version)

    def measure(
        self, data: bytes, zone: Sequence[float] = (), explain: bool = False
    ) -> ImageMeasurement:
        """The vehicles of one image in ``zone`` (x, y pairs, fractions of the frame; empty:
        the whole frame); RequestError for a bad image or zone."""
        frame = decode_image(data, self.max_image_bytes, self.max_pixels)
        height, width = frame.shape[:2]
        polygon = None
        if zone:
            if len(zone) < 6 or len(zone) % 2 or any(not 0 <= v <= 1 for v in zone):
                raise RequestError("zone: 3 or more x, y pairs, each a fraction of the frame")
            polygon = [(float(x), float(y)) for x, y in zip(zone[::2], zone[1::2], strict=True)]
        mask = zone_mask(polygon, (height, width))
        size = (self.card.input.height, self.card.input.width)
        tensor, scale = letterbox(frame, *size)
        with self._lock:
            (output,) = self._session.run(
                [self.card.output_name], {self.card.input.name: tensor[None]}
            )
        found = decode(
            np.asarray(output, np.float32)[0],
            size,
            scale,
            (height, width),
            score_threshold=self.card.score_threshold,
            nms_iou=self.card.nms_iou,
        )
        boxes = found.xyxy.astype(np.float32)
        inside = in_zone(boxes, mask)
        boxes = boxes[inside]
        names = [str(n) for n in np.asarray(found.data["class_name"])[inside]]
        scores = [float(s) for s in np.asarray(found.confidence)[inside]]
        covered = occupancy(mask, boxes)
        evidence = b""
        if explain:
            picture = draw_vehicles(
                frame, boxes, names,
                zone=to_pixels(polygon, (height, width)) if polygon else None,
                text=f"{len(names)} vehicles, occupancy {covered:.2f}",
            )  # fmt: skip
            ok, encoded = cv2.imencode(".png", picture)
            evidence = encoded.tobytes() if ok else b""
        return ImageMeasurement(
            xyxy=[tuple(float(v) for v in b) for b in boxes],  # type: ignore[misc]
            classes=names,
            scores=scores,
            occupancy=round(covered, 4),
            detector_version=self.card.version,
            evidence_png=evidence,
        )
