"""Builders of wire messages for the tests."""

from __future__ import annotations

from roadsense.core.timeutil import now_ms
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.v1 import telemetry_pb2

LABELS = ["free", "light", "moderate", "heavy", "jammed"]


def report(
    *,
    device: str = "dev-1",
    camera: str = "cam1",
    seq: int = 1,
    segment: str = "seg-1",
    probabilities: list[float] | None = None,
    capture_time_ms: int | None = None,
    labels: list[str] | None = None,
    frames: int = 3,
    window_start_ms: int | None = None,
) -> telemetry_pb2.CongestionReport:
    captured = now_ms() if capture_time_ms is None else capture_time_ms
    return telemetry_pb2.CongestionReport(
        schema_version=SCHEMA_VERSION,
        device_id=device,
        camera_id=camera,
        segment_id=segment,
        seq=seq,
        capture_time_ms=captured,
        window_start_ms=captured - 1000 if window_start_ms is None else window_start_ms,
        model_version="test-1",
        labels=LABELS if labels is None else labels,
        probabilities=[0.0, 0.0, 1.0, 0.0, 0.0] if probabilities is None else probabilities,
        frames_in_window=frames,
    )


def status(device: str = "dev-1", online: bool = True) -> telemetry_pb2.DeviceStatus:
    return telemetry_pb2.DeviceStatus(
        schema_version=SCHEMA_VERSION,
        device_id=device,
        state=telemetry_pb2.DeviceStatus.ONLINE if online else telemetry_pb2.DeviceStatus.OFFLINE,
        time_ms=now_ms(),
        agent_version="0.1.0",
        model_version="test-1",
        camera_ids=["cam1"],
    )
