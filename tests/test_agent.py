"""The edge agent on real footage with an in-memory publisher (no broker)."""

from __future__ import annotations

import time
from pathlib import Path

from roadsense.core.publisher import MemoryPublisher
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.classifier import create_classifier
from roadsense.edge.config import CameraConfig, EdgeConfig, OutboxConfig, ReportConfig
from roadsense.edge.outbox import Outbox
from roadsense.models.shipped import PLACEHOLDER_CNN
from roadsense.proto.topics import congestion_topic, health_topic, status_topic
from roadsense.proto.v1 import telemetry_pb2

from .conftest import SAMPLE_VIDEO


def _config(tmp_path: Path, interval_s: float = 0.5) -> EdgeConfig:
    return EdgeConfig(
        device_id="dev-unit",
        reports=ReportConfig(window=3, interval_s=interval_s),
        outbox=OutboxConfig(path=tmp_path / "outbox.sqlite"),
        health_interval_s=0.5,
        cameras=[
            CameraConfig(id="cam1", source=str(SAMPLE_VIDEO), segment_id="seg-a", sample_hz=10),
            CameraConfig(id="cam2", source=str(SAMPLE_VIDEO), segment_id="seg-b", sample_hz=10),
        ],
    )


def _agent(config: EdgeConfig, publisher: MemoryPublisher) -> EdgeAgent:
    classifier = create_classifier("onnxruntime", PLACEHOLDER_CNN)
    return EdgeAgent(config, classifier, publisher, Outbox(config.outbox))


def _wait(condition: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def test_agent_reports_each_camera_with_increasing_seq(tmp_path: Path) -> None:
    publisher = MemoryPublisher()
    agent = _agent(_config(tmp_path), publisher)
    agent.start()
    _wait(lambda: agent.forwarder.acknowledged >= 6)
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
    _wait(lambda: agent.stats.reports_created >= 3)
    agent.stop()
    created = agent.stats.reports_created
    assert created >= 3

    # Next start: the backlog is replayed in order, then new reports follow.
    second = MemoryPublisher()
    restarted = _agent(config, second)
    restarted.start()
    _wait(lambda: restarted.forwarder.acknowledged >= created + 2)
    restarted.stop_capture()
    assert restarted.flush(5.0)
    restarted.stop()
    seqs = [
        telemetry_pb2.CongestionReport.FromString(m.payload).seq
        for m in second.messages
        if m.topic.endswith("/congestion")
    ]
    assert seqs[:created] == list(range(1, created + 1))
    assert seqs == list(range(1, len(seqs) + 1))
