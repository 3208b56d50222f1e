"""The agent's measuring side: one detector for all cameras, one meter per camera.

Frames due from several cameras go through the detector in one batch (up to the card's
largest), as the classifier's do; each camera's meter then takes its own frame. A report
closes the camera's window: its measurements, the level by the rule, and the rule's
level shares as the report's probabilities over free..jammed (``REPORT_SCHEMA_VERSION``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from roadsense.edge.backends.detector import Detector
from roadsense.edge.capture.camera import CapturedFrame
from roadsense.edge.config import CameraConfig
from roadsense.edge.health import InferenceTimer
from roadsense.edge.measure.window import CameraMeter
from roadsense.edge.updates.swap import RecentFrames
from roadsense.models.detection.rule import LEVELS
from roadsense.proto import REPORT_SCHEMA_VERSION
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)


@dataclass
class _Camera:
    meter: CameraMeter
    settings: tuple[object, ...]
    first_ms: int = 0
    last_ms: int = 0


def _settings(camera: CameraConfig) -> tuple[object, ...]:
    """What a meter is built from: a change of any of it starts a new meter."""
    zone = camera.measuring_zone()
    line = camera.counting_line
    return (
        camera.sample_hz,
        tuple(zone) if zone else None,
        tuple(line) if line else None,
        camera.rule,
    )


class MeasuredCameras:
    """Measures the cameras of one device and builds their reports."""

    def __init__(
        self, detector: Detector, timer: InferenceTimer, recent: RecentFrames | None = None
    ) -> None:
        self.detector = detector
        self.recent = recent or RecentFrames(0)
        """The whole frames last measured (a new detector's self-test runs on them)."""
        self._timer = timer
        self._cameras: dict[str, _Camera] = {}
        self.frames_measured = 0

    def configure(self, cameras: Sequence[CameraConfig]) -> None:
        """Keep a meter per enabled camera; a camera whose rate, zone, line or rule changed
        starts afresh (its window so far is dropped: it was measured under other settings)."""
        enabled = {c.id: c for c in cameras if c.enabled}
        for camera_id in set(self._cameras) - set(enabled):
            del self._cameras[camera_id]
        for camera_id, camera in enabled.items():
            settings = _settings(camera)
            current = self._cameras.get(camera_id)
            if current is None or current.settings != settings:
                meter = CameraMeter(
                    camera.sample_hz,
                    camera.measuring_zone(),
                    camera.counting_line,
                    camera.rule.thresholds(),
                    support=self.detector.card.thresholds,
                )
                self._cameras[camera_id] = _Camera(meter, settings)

    def measure(self, frames: Sequence[CapturedFrame]) -> None:
        """Detect in the frames (batched) and give each camera's meter its frame."""
        frames = [f for f in frames if f.camera_id in self._cameras]
        step = self.detector.max_batch
        for start in range(0, len(frames), step):
            batch = frames[start : start + step]
            images = [f.image for f in batch]
            began = time.perf_counter()
            found = self.detector.detect(images)
            self.recent.add(images)
            self._timer.record((time.perf_counter() - began) * 1000, len(batch))
            for frame, image, detections in zip(batch, images, found, strict=True):
                camera = self._cameras[frame.camera_id]
                camera.meter.observe(frame.capture_time_ms / 1000, detections, image.shape[:2])
                camera.first_ms = camera.first_ms or frame.capture_time_ms
                camera.last_ms = frame.capture_time_ms
            self.frames_measured += len(batch)

    def swap(self, detector: Detector) -> str:
        """Put ``detector`` in force (inference loop, between two batches) and close the old
        one; its version. The frames kept for a self-test were the old one's: forgotten."""
        old = self.detector
        self.detector = detector
        for camera in self._cameras.values():
            camera.meter.use_thresholds(detector.card.thresholds)
        self.recent.clear()
        old.close()
        return old.version

    def ready(self, camera_id: str) -> bool:
        """Whether the camera has samples to report."""
        camera = self._cameras.get(camera_id)
        return camera is not None and camera.meter.samples_in_window > 0

    def report(self, camera_id: str, device_id: str, segment_id: str, seq: int) -> bytes:
        """The camera's report of its window so far, which then starts anew."""
        camera = self._cameras[camera_id]
        measurements, shares = camera.meter.close_window()
        measurements.detector_version = self.detector.version
        report = telemetry_pb2.CongestionReport(
            schema_version=REPORT_SCHEMA_VERSION,
            device_id=device_id,
            camera_id=camera_id,
            segment_id=segment_id,
            seq=seq,
            capture_time_ms=camera.last_ms,
            window_start_ms=camera.first_ms,
            model_version=self.detector.version,
            labels=LEVELS,
            probabilities=shares,
            frames_in_window=measurements.samples,
            measurements=measurements,
        )
        camera.first_ms = camera.last_ms = 0
        return report.SerializeToString()
