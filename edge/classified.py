"""The agent's classifying side: one scene classifier for all cameras, a window per camera.

Frames due from several cameras are cropped to their regions of interest and classified
in one batch (up to the model's largest); each camera's calibrated probabilities enter its
smoothing window (``edge/smoothing.py``), a frame below ``uncertain_below`` as no level.
A report carries the window's mean. A new classifier is put in force between two batches,
after the agent reported each fresh window under the old one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from roadsense.core.roi import Roi, crop_roi
from roadsense.edge.backends.classifier import Classifier
from roadsense.edge.capture.camera import CapturedFrame
from roadsense.edge.config import CameraConfig, EdgeConfig
from roadsense.edge.health import InferenceTimer
from roadsense.edge.reports import AgentStats
from roadsense.edge.smoothing import SmoothedCameras, discount_uncertain
from roadsense.edge.updates.swap import RecentFrames
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)


class ClassifiedCameras:
    """Classifies the cameras of one device and builds their reports."""

    def __init__(
        self,
        classifier: Classifier,
        config: EdgeConfig,
        timer: InferenceTimer,
        stats: AgentStats,
    ) -> None:
        self.classifier = classifier
        self.smoothed = SmoothedCameras([c.id for c in config.cameras], config.reports.window)
        self.recent = RecentFrames(config.models.self_test_frames)
        """The frames last classified, cropped (a new classifier's self-test runs on them)."""
        self._uncertain_below = config.classifier.uncertain_below
        self._timer = timer
        self._stats = stats
        self._rois: dict[str, Roi | None] = {}

    def configure(self, cameras: Sequence[CameraConfig], window: int) -> None:
        """Take the cameras' regions of interest and the window length in force."""
        self._rois = {camera.id: camera.roi for camera in cameras}
        for camera in cameras:
            self.smoothed.windows[camera.id].resize(window)

    def classify(self, frames: Sequence[CapturedFrame]) -> None:
        """Classify the frames (batched) and add each to its camera's window."""
        step = self.classifier.max_batch
        for start in range(0, len(frames), step):
            batch = frames[start : start + step]
            began = time.perf_counter()
            images = [crop_roi(f.image, self._rois.get(f.camera_id)) for f in batch]
            probabilities = self.classifier.classify(images)
            self.recent.add(images)
            self._timer.record((time.perf_counter() - began) * 1000, len(batch))
            self._stats.classifier_calls += 1
            self._stats.frames_classified += len(batch)
            for frame, calibrated in zip(batch, probabilities, strict=True):
                row, uncertain = discount_uncertain(calibrated, self._uncertain_below)
                self._stats.uncertain_frames += uncertain
                labels = self.classifier.labels
                self.smoothed.add(frame.camera_id, frame.capture_time_ms, row, labels)

    def fresh_cameras(self) -> list[str]:
        """Cameras with frames not yet reported."""
        return [c for c, window in self.smoothed.windows.items() if window.fresh and len(window)]

    def take_report(
        self, camera_id: str, device_id: str, segment_id: str
    ) -> Callable[[int], bytes]:
        """The camera's report of its window, taken now (the window is no longer fresh even
        if the outbox then fails to store it), built with its seq."""
        smoothed = self.smoothed.take(camera_id, self.classifier.labels)
        classifier = self.classifier

        def build(seq: int) -> bytes:
            return telemetry_pb2.CongestionReport(
                schema_version=SCHEMA_VERSION,
                device_id=device_id,
                camera_id=camera_id,
                segment_id=segment_id,
                seq=seq,
                capture_time_ms=smoothed.end_ms,
                window_start_ms=smoothed.start_ms,
                model_version=classifier.version,
                labels=classifier.labels,
                probabilities=[float(p) for p in smoothed.probabilities],
                frames_in_window=smoothed.frames,
            ).SerializeToString()

        return build

    def swap(self, classifier: Classifier) -> None:
        """Put ``classifier`` in force (inference loop, between two batches; fresh windows
        reported before): windows, streaks and the frames kept for a self-test are the old
        model's and are forgotten (the new model's labels may differ)."""
        old = self.classifier
        self.smoothed.clear()
        self.classifier = classifier
        self.recent.clear()
        self._stats.model_swaps += 1
        logger.info(
            "model %s swapped in for %s between two batches", classifier.version, old.version
        )
        old.close()
