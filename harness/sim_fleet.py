"""Simulated roadside devices that speak the model-rollout contract, for tests and the bench.

Each device is a real MQTT client (QoS 1, its own client id) that publishes a birth
status, congestion reports and health naming its model, and acts on ``cmd/model`` as the
agent does (a measuring device, given a detector version, sends measured reports and takes
updates of kind ``detector`` too): a version it holds applies at once; another is
downloaded over the real ``FleetService.DownloadModel`` and verified
(``roadsense.edge.updates.download``), then "loaded" with the behaviour the test gives
that version (refusal, latency, levels, vehicles), and the answer goes out as a
CommandReply on ``reply/model``. The swap happens between two frames under the frame
lock, so no frame or report is skipped; the device counts any that are (frames whose slot
passed while swapping, reports without a PUBACK).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from roadsense.core.errors import RoadSenseError
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.core.publisher import LastWill
from roadsense.core.timeutil import now_ms
from roadsense.edge.updates.download import download_model, parse_model_update
from roadsense.models.congestion_labels import CONGESTION_LABELS
from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR
from roadsense.proto import REPORT_SCHEMA_VERSION, SCHEMA_VERSION
from roadsense.proto.model_kinds import DETECTOR
from roadsense.proto.topics import (
    command_topic,
    congestion_topic,
    health_topic,
    reply_topic,
    status_topic,
)
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)

LABELS = list(CONGESTION_LABELS)
PLACEHOLDER_CARD = DEFAULT_CNN.parent / "congestion-placeholder.card.json"
DETECTOR_CARD = DEFAULT_DETECTOR.with_suffix(".card.json")


def write_release(folder: Path, version: str, size: int = 300_000, name: str = "city") -> Path:
    """``folder/<name>.onnx`` (random bytes: registry and simulated devices never parse it)
    with a valid card beside it, ready for ``models publish``."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / f"{name}.onnx"
    onnx.write_bytes(os.urandom(size))
    card = json.loads(PLACEHOLDER_CARD.read_text(encoding="utf-8"))
    card.update(
        name=name,
        version=version,
        onnx_file=onnx.name,
        onnx_sha256=hashlib.sha256(onnx.read_bytes()).hexdigest(),
    )
    onnx.with_suffix(".card.json").write_text(json.dumps(card, indent=1), encoding="utf-8")
    return onnx


def write_detector_release(folder: Path, version: str, size: int = 300_000) -> Path:
    """``folder/detector.onnx`` (random bytes) with a valid detector card beside it, ready
    for ``models publish``."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / "detector.onnx"
    onnx.write_bytes(os.urandom(size))
    card = json.loads(DETECTOR_CARD.read_text(encoding="utf-8"))
    card.update(
        version=version,
        onnx_file=onnx.name,
        onnx_sha256=hashlib.sha256(onnx.read_bytes()).hexdigest(),
    )
    onnx.with_suffix(".card.json").write_text(json.dumps(card, indent=1), encoding="utf-8")
    return onnx


@dataclass(frozen=True)
class Behaviour:
    """How a simulated device behaves on one model version."""

    refuse: str = ""
    """A refusal with the agent's prefix (e.g. 'self_test: NaN outputs'); '' to apply."""
    p95_ms: float = 8.0
    uncertain_share: float = 0.05
    class_weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.07, 0.03)
    """Weights of the five congestion classes the device's reports show."""
    vehicles_mean: float = 6.0
    """A measuring device's vehicles in view per sample (on average, with noise)."""
    stopped_share: float = 0.2
    """Of them, the share stopped."""


@dataclass
class DeviceCounters:
    """What one simulated device did."""

    frames: int = 0
    frames_lost: int = 0
    frames_uncertain: int = 0
    reports_created: int = 0
    reports_acked: int = 0
    bytes_downloaded: int = 0
    swaps: int = 0
    applied: list[tuple[str, int]] = field(default_factory=list)
    """(version, time ms) of every model put in force."""


class SimulatedDevice:
    """One device: frames at ``frame_hz``, a report every ``frames_per_report`` frames."""

    def __init__(
        self,
        device_id: str,
        mqtt: MqttConfig,
        *,
        grpc_address: str,
        public_key: bytes,
        folder: Path,
        model_version: str,
        behaviours: dict[str, Behaviour],
        frame_hz: float = 10.0,
        frames_per_report: int = 5,
        health_s: float = 1.0,
        seed: int = 0,
        download_token: str = "",
        detector_version: str = "",
    ) -> None:
        """``download_token``: a bearer token for DownloadModel (a cloud with tokens and no
        device certificates); empty on an open API. ``detector_version``: the detector of
        a measuring device (its reports are measured); empty: the device classifies."""
        self._metadata = (("authorization", f"Bearer {download_token}"),) if download_token else ()
        self.device_id = device_id
        self.version = model_version
        self.previous = ""
        self.detector = detector_version
        self.previous_detector = ""
        self.counters = DeviceCounters()
        self._mqtt = mqtt
        self._grpc_address = grpc_address
        self._public_key = public_key
        self._folder = folder
        self._held = {model_version, detector_version} - {""}
        self.behaviours = behaviours
        """Version → how this device behaves on it (the default Behaviour when absent)."""
        self._frame_s = 1 / frame_hz
        self._frames_per_report = frames_per_report
        self._health_s = health_s
        self._random = random.Random(seed)
        self._frame_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._commands: list[bytes] = []
        self._command_ready = threading.Condition()
        self._seq = 0
        self._started = time.monotonic()
        self._client: MqttPublisher | None = None

    def behaviour(self, version: str) -> Behaviour:
        """The behaviour of ``version`` (the default one when the test names none)."""
        return self.behaviours.get(version, Behaviour())

    def _status(self, online: bool) -> bytes:
        state = telemetry_pb2.DeviceStatus.ONLINE if online else telemetry_pb2.DeviceStatus.OFFLINE
        return telemetry_pb2.DeviceStatus(
            schema_version=SCHEMA_VERSION,
            device_id=self.device_id,
            state=state,
            time_ms=now_ms(),
            agent_version="sim",
            model_version=self.version,
            camera_ids=["cam1"],
        ).SerializeToString()

    def start(self, *, clean_session: bool = False) -> None:
        """Connect and run; ``clean_session`` starts without the broker's stored session."""
        config = (
            self._mqtt.model_copy(update={"session_expiry_s": 0}) if clean_session else self._mqtt
        )
        will = LastWill(status_topic(self.device_id), self._status(False))
        self._client = MqttPublisher(config, self.device_id, will=will, max_inflight=100)
        self._client.subscribe(command_topic(self.device_id, "model"), self._on_command)
        self._client.set_on_connect(self._on_connect)
        self._stop.clear()
        self._client.start()
        if not self._client.wait_connected(10.0):
            raise RoadSenseError(f"{self.device_id}: could not connect to the broker")
        for target, name in (
            (self._frames, "frames"),
            (self._health_loop, "health"),
            (self._command_loop, "commands"),
        ):
            thread = threading.Thread(target=target, name=f"{self.device_id}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Go offline as a clean shutdown does (retained offline status)."""
        self._stop.set()
        with self._command_ready:
            self._command_ready.notify_all()
        for thread in self._threads:
            thread.join(10.0)
        self._threads.clear()
        if self._client is not None:
            self._client.stop(final=(status_topic(self.device_id), self._status(False)))

    def _on_connect(self) -> None:
        assert self._client is not None
        self._client.publish(status_topic(self.device_id), self._status(True), retain=True)

    def _on_command(self, topic: str, payload: bytes) -> None:
        with self._command_ready:
            self._commands.append(payload)
            self._command_ready.notify()

    def _command_loop(self) -> None:
        while not self._stop.is_set():
            with self._command_ready:
                while not self._commands and not self._stop.is_set():
                    self._command_ready.wait(0.5)
                if self._stop.is_set():
                    return
                payload = self._commands.pop(0)
            self._handle(payload)

    def _handle(self, payload: bytes) -> None:
        try:
            request_id, offer = parse_model_update(payload)
        except RoadSenseError as err:
            self._reply("", False, f"command: {err}", "")
            return
        rollout_id = telemetry_pb2.ModelUpdate.FromString(payload).rollout_id
        if offer.version not in self._held:
            try:
                with grpc.insecure_channel(self._grpc_address) as channel:
                    got = download_model(
                        channel,
                        offer,
                        self._public_key,
                        self._folder / self.device_id,
                        metadata=self._metadata,
                    )
            except RoadSenseError as err:
                prefix = "signature" if "sign" in str(err) or "tamper" in str(err) else "download"
                self._reply(request_id, False, f"{prefix}: {err}", rollout_id)
                return
            with self._count_lock:
                self.counters.bytes_downloaded += got.fetched
            self._held.add(offer.version)
        detector = offer.kind == DETECTOR
        refusal = self.behaviour(offer.version).refuse
        if detector and not self.detector:
            refusal = "config: this device runs no detector model"
        if refusal:
            self._reply(request_id, False, refusal, rollout_id, detector)
            return
        in_force = self.detector if detector else self.version
        if offer.version != in_force:
            with self._frame_lock:  # between two frames: none waits, none is skipped
                if detector:
                    self.previous_detector, self.detector = self.detector, offer.version
                else:
                    self.previous, self.version = self.version, offer.version
            with self._count_lock:
                self.counters.swaps += 1
                self.counters.applied.append((offer.version, now_ms()))
            self._send_health()
        self._reply(request_id, True, "", rollout_id, detector)

    def _reply(
        self, request_id: str, ok: bool, error: str, rollout_id: str, detector: bool = False
    ) -> None:
        assert self._client is not None
        settings = {  # as the agent's updater of that kind answers
            "model_version": self.detector if detector else self.version,
            "previous_version": self.previous_detector if detector else self.previous,
            "rollout_id": rollout_id,
        }
        reply = telemetry_pb2.CommandReply(
            schema_version=SCHEMA_VERSION,
            device_id=self.device_id,
            request_id=request_id,
            command="model",
            ok=ok,
            error=error,
            time_ms=now_ms(),
            settings_json=json.dumps(settings),
        )
        self._client.publish(reply_topic(self.device_id, "model"), reply.SerializeToString())

    def _frames(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self._frame_lock:
                version = self.detector or self.version
                behaviour = self.behaviour(version)
            with self._count_lock:
                self.counters.frames += 1
                if self._random.random() < behaviour.uncertain_share:
                    self.counters.frames_uncertain += 1
                frames = self.counters.frames
            if frames % self._frames_per_report == 0:
                self._send_report(version, behaviour)
            next_at += self._frame_s
            late = time.monotonic() - next_at
            if late > self._frame_s:  # slots that passed unprocessed
                skipped = int(late / self._frame_s)
                with self._count_lock:
                    self.counters.frames_lost += skipped
                next_at += skipped * self._frame_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _send_report(self, version: str, behaviour: Behaviour) -> None:
        assert self._client is not None
        band = self._random.choices(range(len(LABELS)), weights=behaviour.class_weights)[0]
        probabilities = [0.02] * len(LABELS)
        probabilities[band] = 1 - 0.02 * (len(LABELS) - 1)
        self._seq += 1
        now = now_ms()
        report = telemetry_pb2.CongestionReport(
            schema_version=SCHEMA_VERSION,
            device_id=self.device_id,
            camera_id="cam1",
            segment_id=f"seg-{self.device_id}",
            seq=self._seq,
            capture_time_ms=now,
            window_start_ms=now - int(self._frame_s * (self._frames_per_report - 1) * 1000),
            model_version=version,
            labels=LABELS,
            probabilities=probabilities,
            frames_in_window=self._frames_per_report,
        )
        if self.detector:
            report.schema_version = REPORT_SCHEMA_VERSION
            report.measurements.CopyFrom(self._measurements(version, behaviour, band))
        with self._count_lock:
            self.counters.reports_created += 1
        self._client.publish(
            congestion_topic(self.device_id, "cam1"),
            report.SerializeToString(),
            on_ack=self._acked,
        )

    def _measurements(
        self, version: str, behaviour: Behaviour, band: int
    ) -> telemetry_pb2.Measurements:
        """A measuring device's window: vehicles around the behaviour's mean, its stopped
        share of them, the level of the report's band."""
        vehicles = max(0.0, self._random.gauss(behaviour.vehicles_mean, 0.5))
        return telemetry_pb2.Measurements(
            samples=self._frames_per_report,
            vehicles_mean=vehicles,
            vehicles_max=round(vehicles) + 1,
            stopped_mean=vehicles * behaviour.stopped_share,
            stopped_max=round(vehicles * behaviour.stopped_share) + 1,
            occupancy=min(1.0, vehicles / 40),
            level=LABELS[band],
            rule="occupancy-stopped/1",
            confidence=0.8,
            tracks=round(vehicles) + 2,
            detector_version=version,
        )

    def _acked(self) -> None:
        with self._count_lock:
            self.counters.reports_acked += 1

    def _health_loop(self) -> None:
        while not self._stop.wait(self._health_s):
            self._send_health()

    def _send_health(self) -> None:
        assert self._client is not None
        with self._frame_lock:
            version = self.detector or self.version
        behaviour = self.behaviour(version)
        with self._count_lock:
            frames, unsure = self.counters.frames, self.counters.frames_uncertain
            created, acked = self.counters.reports_created, self.counters.reports_acked
        health = telemetry_pb2.DeviceHealth(
            schema_version=SCHEMA_VERSION,
            device_id=self.device_id,
            time_ms=now_ms(),
            uptime_s=time.monotonic() - self._started,
            frames_classified=frames,
            frames_uncertain=unsure,
            reports_created=created,
            reports_acknowledged=acked,
            backend="sim",
            inference_p50_ms=behaviour.p95_ms * 0.7,
            inference_p95_ms=behaviour.p95_ms * (0.95 + 0.1 * self._random.random()),
            model_version=self.version,
            detector_version=self.detector,
            previous_detector_version=self.previous_detector,
        )
        self._client.publish(health_topic(self.device_id), health.SerializeToString())
