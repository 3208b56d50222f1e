"""The edge agent on real footage with an in-memory publisher (no broker)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from roadsense.core.metrics import MetricsConfig
from roadsense.core.publisher import MemoryPublisher
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.backends.classifier import Classifier, Probabilities, create_classifier
from roadsense.edge.config import (
    CameraConfig,
    EdgeConfig,
    OutboxConfig,
    ReportConfig,
)
from roadsense.edge.outbox import Outbox
from roadsense.models.card import load_card
from roadsense.models.preprocess import Frame
from roadsense.models.shipped import PLACEHOLDER_CNN
from roadsense.proto.topics import congestion_topic, health_topic, status_topic
from roadsense.proto.v1 import telemetry_pb2

from ..conftest import SAMPLE_VIDEO
from ..support.factories import LABELS
from ..support.helpers import wait_until


def _config(tmp_path: Path, interval_s: float = 0.5) -> EdgeConfig:
    return EdgeConfig(
        device_id="dev-unit",
        reports=ReportConfig(window=3, interval_s=interval_s),
        # These tests have no cloud: the broker's PUBACK is the last hop.
        outbox=OutboxConfig(path=tmp_path / "outbox.sqlite", delivery="broker"),
        health_interval_s=0.5,
        cameras=[
            CameraConfig(id="cam1", source=str(SAMPLE_VIDEO), segment_id="seg-a", sample_hz=10),
            CameraConfig(id="cam2", source=str(SAMPLE_VIDEO), segment_id="seg-b", sample_hz=10),
        ],
    )


def _agent(config: EdgeConfig, publisher: MemoryPublisher) -> EdgeAgent:
    classifier = create_classifier("onnxruntime", PLACEHOLDER_CNN)
    return EdgeAgent(config, classifier, publisher, Outbox(config.outbox))


def test_agent_reports_each_camera_with_increasing_seq(tmp_path: Path) -> None:
    publisher = MemoryPublisher()
    agent = _agent(_config(tmp_path), publisher)
    agent.start()
    wait_until(lambda: agent.forwarder.acknowledged >= 6)
    agent.stop_capture()
    assert agent.flush(5.0)
    agent.stop()

    birth = telemetry_pb2.DeviceStatus.FromString(publisher.messages[0].payload)
    assert publisher.messages[0].topic == status_topic("dev-unit")
    assert publisher.messages[0].retain is True
    assert birth.state == telemetry_pb2.DeviceStatus.ONLINE
    assert list(birth.camera_ids) == ["cam1", "cam2"]

    reports = [
        (m.topic, telemetry_pb2.CongestionReport.FromString(m.payload))
        for m in publisher.messages
        if m.topic.endswith("/congestion")
    ]
    seqs = [r.seq for _, r in reports]
    assert seqs == list(range(1, len(reports) + 1))
    assert len(reports) == agent.stats.reports_created
    for topic, report in reports:
        assert topic == congestion_topic("dev-unit", report.camera_id)
        assert report.segment_id == {"cam1": "seg-a", "cam2": "seg-b"}[report.camera_id]
        assert 1 <= report.frames_in_window <= 3
        assert report.window_start_ms <= report.capture_time_ms
        assert list(report.labels) == ["free", "light", "moderate", "heavy", "jammed"]
        assert abs(sum(report.probabilities) - 1.0) < 1e-4
        assert report.model_version == "0.1.0-placeholder"
    assert {r.camera_id for _, r in reports} == {"cam1", "cam2"}
    # Both cameras are due together: they share classifier calls.
    assert agent.stats.classifier_calls < agent.stats.frames_classified
    health = [m for m in publisher.messages if m.topic == health_topic("dev-unit")]
    assert health, "no health message"
    last = publisher.messages[-1]
    assert last.topic == status_topic("dev-unit")
    assert last.retain
    assert telemetry_pb2.DeviceStatus.FromString(last.payload).state == (
        telemetry_pb2.DeviceStatus.OFFLINE
    )


def test_unacknowledged_reports_stay_for_the_next_run(tmp_path: Path) -> None:
    publisher = MemoryPublisher(auto_ack=False)
    config = _config(tmp_path, interval_s=0.3)
    agent = _agent(config, publisher)
    agent.start()
    wait_until(lambda: agent.stats.reports_created >= 3)
    agent.stop()
    created = agent.stats.reports_created
    assert created >= 3

    # Next start: nothing is lost and no number is reused.
    second = MemoryPublisher()
    restarted = _agent(config, second)
    restarted.start()
    wait_until(lambda: restarted.forwarder.acknowledged >= created + 2)
    restarted.stop_capture()
    assert restarted.flush(5.0)
    restarted.stop()
    seqs = [
        telemetry_pb2.CongestionReport.FromString(m.payload).seq
        for m in second.messages
        if m.topic.endswith("/congestion")
    ]
    # The backlog is replayed in order; new reports may overtake it.
    assert [s for s in seqs if s <= created] == list(range(1, created + 1))
    assert sorted(seqs) == list(range(1, len(seqs) + 1))


class ScriptedClassifier(Classifier):
    """Answers 'free' for the first frames, then 'jammed'."""

    key = "scripted"

    def __init__(self, switch_after: int) -> None:
        super().__init__(PLACEHOLDER_CNN, load_card(PLACEHOLDER_CNN))
        self.calls = 0
        self.switch_after = switch_after

    def classify(self, frames: Sequence[Frame]) -> Probabilities:
        rows = []
        for _ in frames:
            self.calls += 1
            label = 0 if self.calls <= self.switch_after else 4
            rows.append(np.eye(5, dtype=np.float32)[label])
        return np.stack(rows)


def test_a_level_change_is_reported_at_once(tmp_path: Path) -> None:
    config = _config(tmp_path, interval_s=60.0).model_copy(
        update={"cameras": _config(tmp_path).cameras[:1]}
    )
    config = config.model_copy(update={"reports": ReportConfig(window=1, interval_s=60.0)})
    publisher = MemoryPublisher()
    agent = EdgeAgent(config, ScriptedClassifier(switch_after=5), publisher, Outbox(config.outbox))
    agent.start()
    try:
        assert wait_until(lambda: agent.stats.reports_created >= 2, 10.0)
    finally:
        agent.stop()
    reports = [
        telemetry_pb2.CongestionReport.FromString(m.payload)
        for m in publisher.messages
        if m.topic.endswith("/congestion")
    ]
    # The first report waits for the 60 s cadence only if nothing changes; the
    # switch to 'jammed' is reported immediately.
    labels = [LABELS[int(np.argmax(r.probabilities))] for r in reports]
    assert labels[-1] == "jammed"
    assert "jammed" in labels
    assert len(reports) >= 2


class FlappingClassifier(ScriptedClassifier):
    """Alternates between 'free' and 'jammed' every frame."""

    def classify(self, frames: Sequence[Frame]) -> Probabilities:
        rows = []
        for _ in frames:
            self.calls += 1
            rows.append(np.eye(5, dtype=np.float32)[0 if self.calls % 2 else 4])
        return np.stack(rows)


def test_a_flapping_class_is_not_reported_every_frame(tmp_path: Path) -> None:
    config = _config(tmp_path).model_copy(
        update={
            "cameras": _config(tmp_path).cameras[:1],
            "reports": ReportConfig(window=1, interval_s=60.0, change_confirm_frames=3),
        }
    )
    classifier = FlappingClassifier(switch_after=0)
    agent = EdgeAgent(config, classifier, MemoryPublisher(), Outbox(config.outbox))
    agent.start()
    try:
        assert wait_until(lambda: classifier.calls >= 20, 10.0)
    finally:
        agent.stop()
    assert agent.stats.reports_created == 1  # only the first, when the window filled


def test_full_disk_is_counted_and_reported_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = MemoryPublisher(auto_ack=False)
    config = _config(tmp_path, interval_s=0.2)
    agent = _agent(config, publisher)
    # Cap the file at its current size: the next report finds the "disk" full.
    pages = agent.outbox._db.execute("PRAGMA page_count").fetchone()[0]
    agent.outbox._db.execute(f"PRAGMA max_page_count = {pages}")
    agent.start()
    try:
        assert wait_until(lambda: agent.stats.reports_lost >= 3, 15.0)
        health = agent.health()
        assert health.reports_lost >= 3
        assert "full" in health.outbox_state
        assert agent.cameras["cam1"].state.value == "streaming"  # the agent keeps running
    finally:
        agent.stop()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1  # logged once per minute, not per report
    assert "report lost" in errors[0].getMessage()
    assert "full" in errors[0].getMessage()
    caplog.clear()


def test_health_and_metrics_report_the_same_figures(tmp_path: Path) -> None:
    config = _config(tmp_path).model_copy(update={"metrics": MetricsConfig(enabled=True, port=0)})
    agent = _agent(config, MemoryPublisher())
    agent.start()
    try:
        assert wait_until(lambda: agent.forwarder.acknowledged >= 2)
        health = agent.health()
        assert {c.camera_id: c.state for c in health.cameras} == {
            "cam1": "streaming",
            "cam2": "streaming",
        }
        assert all(c.fps > 10 and c.sample_hz == 10 for c in health.cameras)
        assert health.inference_p95_ms >= health.inference_p50_ms > 0
        assert 1 <= health.mean_batch_size <= 2
        assert health.model_version == "0.1.0-placeholder"
        assert health.outbox_state == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics") as page:
            text = page.read().decode()
        assert (
            'roadsense_edge_camera_state{camera="cam1",device="dev-unit",state="streaming"} 1.0'
            in text
        )
        assert re.search(r'roadsense_edge_frames_classified_total\{device="dev-unit"\} \d+', text)
        assert "roadsense_edge_inference_latency_p95_ms" in text
        used = re.search(
            r'roadsense_edge_camera_frames_used_total\{camera="cam1",device="dev-unit"\} (\S+)',
            text,
        )
        assert used is not None
        assert float(used.group(1)) >= 1
        assert "roadsense_edge_process_cpu_share" in text
        # OpenCV decodes every frame of the file; the classifier takes a few.
        for camera in health.cameras:
            assert camera.decode_mode == "all"
            assert 0 < camera.frames_used < camera.frames_captured
            assert (camera.width, camera.height) == (320, 240)
        assert health.cpu_count >= 1
        assert 0 < health.process_cpu_share <= 1
    finally:
        agent.stop()


class RecordingClassifier(ScriptedClassifier):
    """Answers 'free' and keeps the size of every frame it was given."""

    def __init__(self) -> None:
        super().__init__(switch_after=10**9)
        self.shapes: list[tuple[int, ...]] = []

    def classify(self, frames: Sequence[Frame]) -> Probabilities:
        self.shapes.extend(frame.shape for frame in frames)
        return super().classify(frames)


def test_the_classifier_sees_only_each_cameras_roi(tmp_path: Path) -> None:
    # The shipped clip is 320x240: cam1 keeps the lower-right quarter, cam2 the whole frame.
    cameras = [
        CameraConfig(
            id="cam1",
            source=str(SAMPLE_VIDEO),
            segment_id="seg-a",
            sample_hz=10,
            roi=(0.5, 0.5, 0.5, 0.5),
        ),
        CameraConfig(id="cam2", source=str(SAMPLE_VIDEO), segment_id="seg-b", sample_hz=10),
    ]
    config = _config(tmp_path).model_copy(update={"cameras": cameras})
    classifier = RecordingClassifier()
    agent = EdgeAgent(config, classifier, MemoryPublisher(), Outbox(config.outbox))
    agent.start()
    try:
        assert wait_until(lambda: len(classifier.shapes) >= 10, 10.0)
    finally:
        agent.stop()
    assert set(classifier.shapes) == {(120, 160, 3), (240, 320, 3)}
