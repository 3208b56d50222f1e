"""The edge agent: cameras → batched CNN → outbox → MQTT.

Every camera is sampled at its own rate; frames due from all cameras go to one model in
one batch (up to its max batch): the vehicle detector when the device measures
(``edge/measure/cameras.py``: counts, stopped vehicles, occupancy, the level by the rule),
else the scene classifier (``edge/classified.py``: probabilities smoothed over a window).
Each camera is reported every interval (a classifying camera also at once when its level
changes). Reports enter the durable outbox first; the forwarder publishes them. Settings
changed by a remote ``config`` command are applied by the inference loop and persisted in
the outbox file. Commands (``edge/commands/handler.py``) are answered on the MQTT client's
thread; a ``model`` command goes to the updater of its kind (``edge/updates/updater.py``),
whose new model the inference loop swaps in between two batches.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadsense.core.metrics import MetricsServer
from roadsense.core.publisher import Publisher
from roadsense.core.timeutil import now_ms
from roadsense.edge.backends.classifier import Classifier
from roadsense.edge.backends.detector import Detector
from roadsense.edge.capture.camera import CameraCapture, CapturedFrame
from roadsense.edge.classified import ClassifiedCameras
from roadsense.edge.commands.handler import CommandHandler, RemoteSettings
from roadsense.edge.config import EdgeConfig
from roadsense.edge.forwarder import Confirmation, Forwarder
from roadsense.edge.health import CpuMeter, InferenceTimer, camera_health, read_temperatures
from roadsense.edge.measure.cameras import MeasuredCameras
from roadsense.edge.metrics import serve_health_metrics
from roadsense.edge.outbox import Outbox
from roadsense.edge.reports import AgentStats, ReportLog
from roadsense.edge.status import status_message
from roadsense.edge.updates.slots import classifier_slot, detector_slot
from roadsense.edge.updates.swap import ModelHandover, RecentFrames
from roadsense.edge.updates.updater import ModelUpdater, route_update
from roadsense.models.preprocess import Frame
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.model_kinds import CONGESTION, DETECTOR
from roadsense.proto.topics import (
    ack_topic,
    command_filter,
    congestion_topic,
    health_topic,
    status_topic,
)
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)

SWAP_TIMEOUT_S = 30.0


class EdgeAgent:
    """Runs the capture → classify → report → publish loop of one device."""

    def __init__(
        self,
        config: EdgeConfig,
        classifier: Classifier,
        publisher: Publisher,
        outbox: Outbox,
        loader: Callable[[Path], Classifier] | None = None,
        *,
        detector: Detector | None = None,
    ) -> None:
        self.file_config = config
        self.settings = RemoteSettings(config, outbox)
        self.publisher = publisher
        self.outbox = outbox
        self.stats = AgentStats()
        self.reports = ReportLog(outbox, self.stats)
        self.timer = InferenceTimer()
        self.classified = ClassifiedCameras(classifier, config, self.timer, self.stats)
        """The classifying side (every device; it reports when the device does not measure)."""
        self.measured = (
            MeasuredCameras(detector, self.timer, RecentFrames(config.models.self_test_frames))
            if detector
            else None
        )
        """The measuring side, when the device measures (``[measure] enabled``)."""
        self._cpu = CpuMeter()
        self.forwarder = Forwarder(
            outbox,
            publisher,
            config.outbox.max_inflight,
            config.outbox.replay_rate_per_s,
            Confirmation(config.outbox.confirm_timeout_s, config.outbox.confirm_timeout_max_s)
            if config.outbox.delivery == "cloud"
            else None,
        )
        self.cameras: dict[str, CameraCapture] = {}
        self._segments = {c.id: c.segment_id for c in config.cameras}
        self._metrics: MetricsServer | None = None
        self._handover = ModelHandover(SWAP_TIMEOUT_S)
        self._detector_handover = ModelHandover(SWAP_TIMEOUT_S)
        self._update_error = ""
        self.updater = ModelUpdater(config, classifier_slot(config, self, loader), self.reply_model)
        self.detector_updater = (
            ModelUpdater(config, detector_slot(config, self), self.reply_model)
            if self.measured is not None
            else None
        )
        """The detector's updater, when the device measures."""
        self.commands = CommandHandler(self.settings, publisher, self._still, self.submit_model)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"agent-{config.device_id}", daemon=True
        )
        self._started_at = time.monotonic()
        publisher.set_on_connect(self._on_connect)
        # QoS 1 on a persistent session: commands sent while the device is offline wait
        # for it at the broker (paho_client subscribes every filter at QoS 1).
        publisher.subscribe(command_filter(config.device_id), self.commands.on_command)
        if config.outbox.delivery == "cloud":
            publisher.subscribe(
                ack_topic(config.device_id),
                functools.partial(self.forwarder.on_delivery_ack, config.device_id),
            )

    # Lifecycle -------------------------------------------------------------

    @property
    def device_id(self) -> str:
        """This device's id."""
        return self.file_config.device_id

    @property
    def classifier(self) -> Classifier:
        """The scene classifier in force."""
        return self.classified.classifier

    @property
    def config(self) -> EdgeConfig:
        """The configuration in force: the file's with the remote overrides."""
        return self.settings.current

    @property
    def metrics_port(self) -> int | None:
        """Port of the Prometheus endpoint, when it runs."""
        return self._metrics.port if self._metrics else None

    def start(self) -> None:
        """Start cameras, forwarder, metrics, MQTT and the inference loop."""
        logger.info(
            "edge agent %s starting: %d camera(s), backend %s, model %s",
            self.device_id,
            len(self.config.cameras),
            self.classifier.key,
            self.classifier.card.version,
        )
        self._reconcile_cameras()
        self.forwarder.start()
        metrics = self.file_config.metrics
        if metrics.enabled:
            self._metrics = serve_health_metrics(metrics.host, metrics.port, self.health)
        self.publisher.start()
        self._thread.start()
        self.updater.start()
        if self.detector_updater is not None:
            self.detector_updater.start()

    def stop_capture(self) -> None:
        """Stop cameras and inference; reports already made keep flowing."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)
        for camera in list(self.cameras.values()):
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
        self._stop.set()  # also ends an update's wait for recent frames
        self.updater.stop()
        if self.detector_updater is not None:
            self.detector_updater.stop()
        self.stop_capture()
        offline = status_message(
            self.device_id,
            telemetry_pb2.DeviceStatus.OFFLINE,
            self.classifier.card.version,
            [c.id for c in self.file_config.cameras],
        )
        self.forwarder.stop()
        self.publisher.stop(final=(status_topic(self.device_id), offline))
        if self._metrics:
            self._metrics.stop()
        self.classifier.close()
        if self.measured is not None:
            self.measured.detector.close()
        self.outbox.close()
        logger.info("edge agent %s stopped", self.device_id)

    def shutdown(self) -> None:
        """SIGTERM: stop capture, flush within the grace period, say offline, close."""
        self.stop_capture()
        grace = self.file_config.shutdown_grace_s
        if not self.flush(grace):
            logger.warning(
                "%d reports still unacknowledged after %.0f s; kept for the next start",
                self.outbox.pending_count(),
                grace,
            )
        self.stop()

    # MQTT ------------------------------------------------------------------

    def _on_connect(self) -> None:
        self._publish_birth()
        self._publish_health()  # status and health before any backlog
        self.forwarder.connected()

    def _publish_birth(self) -> None:
        birth = status_message(
            self.device_id,
            telemetry_pb2.DeviceStatus.ONLINE,
            self.classifier.card.version,
            [c.id for c in self.file_config.cameras],
        )
        self.publisher.publish(status_topic(self.device_id), birth, qos=1, retain=True)

    def _still(self, camera_id: str) -> tuple[CapturedFrame | None, str]:
        """The newest frame of a camera for a snapshot, and the camera's state."""
        capture = self.cameras.get(camera_id)
        if capture is None:
            return None, "disabled"
        return capture.still(), capture.state.value

    # Model updates (called by the updater's thread) ----------------------------

    def submit_model(self, payload: bytes) -> None:
        """A ModelUpdate (MQTT thread), for the updater of its kind."""
        updaters = {CONGESTION: self.updater, DETECTOR: self.detector_updater}
        route_update(payload, {k: u for k, u in updaters.items() if u}, self.reply_model)

    def reply_model(self, request_id: str, ok: bool, error: str, settings: dict[str, Any]) -> None:
        """Answer a ModelUpdate on reply/model; settings_json names the model in force."""
        self._update_error = error
        self.commands.reply("model", request_id, ok=ok, error=error, settings=json.dumps(settings))
        self._publish_health()  # the version in force and the last update's outcome

    def recent_frames(self, count: int, wait_s: float) -> list[Frame]:
        """Up to ``count`` of the frames last classified, cropped as the classifier saw them."""
        return self.classified.recent.take(count, wait_s, self._stop)

    def swap_classifier(self, candidate: Classifier) -> float:
        """Have the inference loop put ``candidate`` in force between two batches; the
        time in ms the loop spent on it."""
        # Not started (or stopped): nothing runs in between, this thread swaps it in.
        step = None if self._thread.is_alive() else self._take_new_model
        pause_ms = self._handover.hand_over(candidate, step)
        self._publish_birth()  # the retained status names the model in force
        return pause_ms

    @property
    def detector(self) -> Detector:
        """The detector in force (a measuring device's)."""
        assert self.measured is not None
        return self.measured.detector

    def recent_measured_frames(self, count: int, wait_s: float) -> list[Frame]:
        """Up to ``count`` of the whole frames last measured."""
        assert self.measured is not None
        return self.measured.recent.take(count, wait_s, self._stop)

    def swap_detector(self, candidate: Detector) -> float:
        """Have the inference loop put ``candidate`` in force between two batches; the time
        in ms the loop spent on it."""
        step = None if self._thread.is_alive() else self._take_new_detector
        return self._detector_handover.hand_over(candidate, step)

    def _take_new_detector(self) -> None:
        self._detector_handover.take(self._put_detector_in_force)

    def _put_detector_in_force(self, detector: Detector) -> None:
        """Each camera's window so far is reported under the old detector first: a report
        never mixes two detectors' counts."""
        assert self.measured is not None
        for camera_id in self._segments:
            if self.measured.ready(camera_id):
                self._report_measured(camera_id)
        old = self.measured.swap(detector)
        logger.info("detector %s swapped in for %s between two batches", detector.version, old)

    def _take_new_model(self) -> None:
        """Swap in the waiting classifier (inference loop, between two batches)."""
        self._handover.take(self._put_in_force)

    def _put_in_force(self, classifier: Classifier) -> None:
        """Each fresh window is reported under the old model's version first: a report never
        mixes two models' probabilities (their labels may differ)."""
        for camera_id in self.classified.fresh_cameras():
            self._report(camera_id)
        self.classified.swap(classifier)

    # Inference loop ----------------------------------------------------------

    def _reconcile_cameras(self) -> None:
        """Start enabled cameras, stop disabled ones, resize windows, take the regions of
        interest (loop thread)."""
        config = self.config
        self.classified.configure(config.cameras, config.reports.window)
        for camera_config in config.cameras:
            running = self.cameras.get(camera_config.id)
            if camera_config.enabled and running is None:
                capture = CameraCapture(camera_config)
                self.cameras[camera_config.id] = capture
                capture.start()
            elif not camera_config.enabled and running is not None:
                running.stop()
                del self.cameras[camera_config.id]
            elif running is not None:
                running.set_sample_hz(camera_config.sample_hz)  # may change the decode mode
        if self.measured is not None:
            self.measured.configure(config.cameras)

    def _run(self) -> None:
        next_sample: dict[str, float] = {}
        next_report: dict[str, float] = {}
        next_health = time.monotonic() + self.file_config.health_interval_s
        applied = self.config
        while not self._stop.is_set():
            if self._handover.waiting:
                self._take_new_model()
            if self._detector_handover.waiting:
                self._take_new_detector()
            config = self.config
            if config is not applied:
                self._reconcile_cameras()
                applied = config
            periods = {c.id: 1.0 / c.sample_hz for c in config.cameras if c.enabled}
            now = time.monotonic()
            due: list[CapturedFrame] = []
            for cam_id, period in periods.items():
                camera = self.cameras.get(cam_id)
                if camera is None or now < next_sample.get(cam_id, 0.0):
                    continue
                frame = camera.take()
                if frame is not None:
                    due.append(frame)
                    # Due times sit on a grid per rate, so cameras sampled at the
                    # same rate come due together and share one classifier call.
                    next_sample[cam_id] = (math.floor(now / period) + 1) * period
            if due:
                self.stats.frames_sampled += len(due)
                if self.measured is not None:
                    self.measured.measure(due)
                    self.stats.frames_classified += len(due)
                else:
                    self.classified.classify(due)
            interval = config.reports.interval_s
            for cam_id in periods:
                if self.measured is not None:
                    if self.measured.ready(cam_id) and now >= next_report.setdefault(
                        cam_id, now + interval
                    ):
                        self._report_measured(cam_id)
                        next_report[cam_id] = now + interval
                    continue
                if not self.classified.smoothed.fresh(cam_id):
                    continue
                urgent = self.classified.smoothed.urgent(cam_id, config.reports)
                if urgent or now >= next_report.setdefault(cam_id, now + interval):
                    self._report(cam_id)
                    next_report[cam_id] = now + interval
            if now >= next_health:
                self._publish_health()
                next_health = now + self.file_config.health_interval_s
            wake = min([*(next_sample.get(c, now) for c in periods), next_health])
            self._stop.wait(min(max(wake - time.monotonic(), 0.005), 0.25))

    def _report(self, camera_id: str) -> None:
        segment = self._segments[camera_id]
        self._append(camera_id, self.classified.take_report(camera_id, self.device_id, segment))

    def _report_measured(self, camera_id: str) -> None:
        assert self.measured is not None
        measured = self.measured
        segment = self._segments[camera_id]
        self._append(
            camera_id, lambda seq: measured.report(camera_id, self.device_id, segment, seq)
        )

    def _append(self, camera_id: str, build: Callable[[int], bytes]) -> None:
        """Store one report in the outbox (its payload built with its seq) and count it."""
        if self.reports.append(congestion_topic(self.device_id, camera_id), build):
            self.forwarder.notify()

    # Health ------------------------------------------------------------------

    def health(self) -> telemetry_pb2.DeviceHealth:
        """The device's current health message."""
        config = self.config
        cameras = camera_health(config.cameras, self.cameras)
        outbox = self.outbox.stats()
        p50, p95, batch = self.timer.summary()
        return telemetry_pb2.DeviceHealth(
            schema_version=SCHEMA_VERSION,
            device_id=self.device_id,
            time_ms=now_ms(),
            uptime_s=round(time.monotonic() - self._started_at, 3),
            cameras=cameras,
            frames_classified=self.stats.frames_classified,
            reports_created=self.stats.reports_created,
            reports_acknowledged=self.forwarder.acknowledged,
            outbox_pending=outbox.depth,
            outbox_dropped=outbox.dropped,
            backend=self.classifier.key,
            inference_p50_ms=p50,
            inference_p95_ms=p95,
            mean_batch_size=batch,
            outbox_bytes=outbox.bytes,
            outbox_oldest_age_s=round(outbox.oldest_age_s, 3),
            temperatures_c=read_temperatures(),
            model_version=self.classifier.card.version,
            outbox_state=self.reports.state,
            reports_lost=self.stats.reports_lost,
            snapshots_sent=self.commands.snapshots_sent,
            reports_confirmed=self.forwarder.confirmed,
            outbox_awaiting_cloud=outbox.awaiting_cloud,
            process_cpu_share=self._cpu.share(),
            cpu_count=self._cpu.cores,
            frames_uncertain=self.stats.uncertain_frames,
            previous_model_version=self.updater.previous_version,
            model_update_error=self._update_error,
            detector_version=self.measured.detector.version if self.measured else "",
            previous_detector_version=(
                self.detector_updater.previous_version if self.detector_updater else ""
            ),
        )

    def _publish_health(self) -> None:
        if self.publisher.is_connected():
            payload = self.health().SerializeToString()
            self.publisher.publish(health_topic(self.device_id), payload, qos=1)
