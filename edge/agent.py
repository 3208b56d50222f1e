"""The edge agent: cameras → batched CNN → smoothing → outbox → MQTT.

Every camera is sampled at its own rate; frames due from all cameras go to
the classifier in one batch (up to the model's max batch). Each camera's
probabilities are smoothed over a window and reported every interval. Reports
enter the durable outbox first; the forwarder publishes them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from roadsense.core import __version__
from roadsense.core.publisher import LastWill, Publisher
from roadsense.core.timeutil import now_ms
from roadsense.edge.capture import CameraCapture, CapturedFrame
from roadsense.edge.classifier import Classifier
from roadsense.edge.config import EdgeConfig
from roadsense.edge.forwarder import Forwarder
from roadsense.edge.outbox import Outbox
from roadsense.edge.smoothing import ProbabilityWindow
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.topics import congestion_topic, health_topic, status_topic
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)


@dataclass
class AgentStats:
    """Counters of one agent run."""

    frames_classified: int = 0
    classifier_calls: int = 0
    reports_created: int = 0


def status_message(device_id: str, state: int, model_version: str, camera_ids: list[str]) -> bytes:
    """Serialised DeviceStatus for birth (ONLINE) or last will (OFFLINE)."""
    return telemetry_pb2.DeviceStatus(
        schema_version=SCHEMA_VERSION,
        device_id=device_id,
        state=state,  # type: ignore[arg-type]
        time_ms=now_ms(),
        agent_version=__version__,
        model_version=model_version,
        camera_ids=camera_ids,
    ).SerializeToString()


def last_will(config: EdgeConfig, model_version: str) -> LastWill:
    """The retained OFFLINE status the broker publishes if the device vanishes."""
    payload = status_message(
        config.device_id,
        telemetry_pb2.DeviceStatus.OFFLINE,
        model_version,
        [c.id for c in config.cameras],
    )
    return LastWill(status_topic(config.device_id), payload)


class EdgeAgent:
    """Runs the capture → classify → report → publish loop of one device."""

    def __init__(
        self,
        config: EdgeConfig,
        classifier: Classifier,
        publisher: Publisher,
        outbox: Outbox,
    ) -> None:
        self.config = config
        self.classifier = classifier
        self.publisher = publisher
        self.outbox = outbox
        self.stats = AgentStats()
        self.forwarder = Forwarder(outbox, publisher, config.outbox.max_inflight)
        self.cameras = [CameraCapture(c) for c in config.cameras]
        self._windows = {c.id: ProbabilityWindow(config.reports.window) for c in config.cameras}
        self._segments = {c.id: c.segment_id for c in config.cameras}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"agent-{config.device_id}", daemon=True
        )
        self._started_at = time.monotonic()
        publisher.set_on_connect(self._on_connect)

    # Lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start cameras, forwarder, MQTT and the inference loop."""
        logger.info(
            "edge agent %s starting: %d camera(s), backend %s, model %s",
            self.config.device_id,
            len(self.cameras),
            self.classifier.key,
            self.classifier.card.version,
        )
        for camera in self.cameras:
            camera.start()
        self.forwarder.start()
        self.publisher.start()
        self._thread.start()

    def stop_capture(self) -> None:
        """Stop cameras and inference; reports already made keep flowing."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)
        for camera in self.cameras:
            camera.stop()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every stored report is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.pending_count() and time.monotonic() < deadline:
            self.forwarder.notify()
            time.sleep(0.05)
        return self.outbox.pending_count() == 0

    def stop(self) -> None:
        """Stop everything; unacknowledged reports stay in the outbox for next time."""
        self.stop_capture()
        offline = status_message(
            self.config.device_id,
            telemetry_pb2.DeviceStatus.OFFLINE,
            self.classifier.card.version,
            [c.id for c in self.config.cameras],
        )
        self.forwarder.stop()
        self.publisher.stop(final=(status_topic(self.config.device_id), offline))
        self.classifier.close()
        self.outbox.close()
        logger.info("edge agent %s stopped", self.config.device_id)

    # MQTT ------------------------------------------------------------------

    def _on_connect(self) -> None:
        birth = status_message(
            self.config.device_id,
            telemetry_pb2.DeviceStatus.ONLINE,
            self.classifier.card.version,
            [c.id for c in self.config.cameras],
        )
        self.publisher.publish(status_topic(self.config.device_id), birth, qos=1, retain=True)
        self.forwarder.notify()

    # Inference loop ----------------------------------------------------------

    def _run(self) -> None:
        sample_period = {c.id: 1.0 / c.sample_hz for c in self.config.cameras}
        next_sample = dict.fromkeys(sample_period, 0.0)
        last_index = dict.fromkeys(sample_period, 0)
        next_report = {
            c.id: time.monotonic() + self.config.reports.interval_s for c in self.config.cameras
        }
        next_health = time.monotonic() + self.config.health_interval_s
        while not self._stop.is_set():
            now = time.monotonic()
            due: list[CapturedFrame] = []
            for camera in self.cameras:
                cam_id = camera.config.id
                if now < next_sample[cam_id]:
                    continue
                frame = camera.latest()
                if frame is not None and frame.index != last_index[cam_id]:
                    due.append(frame)
                    last_index[cam_id] = frame.index
                    # Due times sit on a grid per rate, so cameras sampled at the
                    # same rate come due together and share one classifier call.
                    period = sample_period[cam_id]
                    next_sample[cam_id] = (math.floor(now / period) + 1) * period
            if due:
                self._classify(due)
            for cam_id, window in self._windows.items():
                if now >= next_report[cam_id] and window.fresh:
                    self._report(cam_id, window)
                    next_report[cam_id] = now + self.config.reports.interval_s
            if now >= next_health:
                self._publish_health()
                next_health = now + self.config.health_interval_s
            wake = min([*next_sample.values(), next_health])
            self._stop.wait(min(max(wake - time.monotonic(), 0.005), 0.25))

    def _classify(self, frames: list[CapturedFrame]) -> None:
        step = self.classifier.max_batch
        for start in range(0, len(frames), step):
            batch = frames[start : start + step]
            probabilities = self.classifier.classify([f.image for f in batch])
            self.stats.classifier_calls += 1
            self.stats.frames_classified += len(batch)
            for frame, row in zip(batch, probabilities, strict=True):
                self._windows[frame.camera_id].add(frame.capture_time_ms, row)

    def _report(self, camera_id: str, window: ProbabilityWindow) -> None:
        start_ms, end_ms = window.span_ms()
        probabilities = window.mean()
        frames = len(window)
        window.fresh = False

        def build(seq: int) -> bytes:
            return telemetry_pb2.CongestionReport(
                schema_version=SCHEMA_VERSION,
                device_id=self.config.device_id,
                camera_id=camera_id,
                segment_id=self._segments[camera_id],
                seq=seq,
                capture_time_ms=end_ms,
                window_start_ms=start_ms,
                model_version=self.classifier.card.version,
                labels=self.classifier.labels,
                probabilities=[float(p) for p in probabilities],
                frames_in_window=frames,
            ).SerializeToString()

        self.outbox.append(congestion_topic(self.config.device_id, camera_id), build)
        self.stats.reports_created += 1
        self.forwarder.notify()

    def health(self) -> telemetry_pb2.DeviceHealth:
        """The device's current health message."""
        cameras = []
        for camera in self.cameras:
            latest = camera.latest()
            cameras.append(
                telemetry_pb2.CameraHealth(
                    camera_id=camera.config.id,
                    state=camera.state.value,
                    frames_captured=camera.frames_captured,
                    last_frame_ms=latest.capture_time_ms if latest else 0,
                )
            )
        return telemetry_pb2.DeviceHealth(
            schema_version=SCHEMA_VERSION,
            device_id=self.config.device_id,
            time_ms=now_ms(),
            uptime_s=time.monotonic() - self._started_at,
            cameras=cameras,
            frames_classified=self.stats.frames_classified,
            reports_created=self.stats.reports_created,
            reports_acknowledged=self.forwarder.acknowledged,
            outbox_pending=self.outbox.pending_count(),
            outbox_dropped=self.outbox.dropped_count(),
            backend=self.classifier.key,
        )

    def _publish_health(self) -> None:
        if self.publisher.is_connected():
            payload = self.health().SerializeToString()
            self.publisher.publish(health_topic(self.config.device_id), payload, qos=1)
