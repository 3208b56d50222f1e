"""Decoding and validating telemetry: accept good data, dead-letter the rest with a reason."""

from __future__ import annotations

import pytest

from roadsense.cloud.domain import HealthRecord, Reading, Rejected, StatusUpdate
from roadsense.cloud.ingest.congestion import level_from_probabilities
from roadsense.cloud.ingest.decode import decode_message
from roadsense.core.timeutil import now_ms
from roadsense.proto.v1 import telemetry_pb2

from ..support.factories import report, status

TOPIC = "roadsense/v1/dev-1/cam1/congestion"
SKEW_MS = 30_000


def _decode(topic: str, payload: bytes) -> object:
    return decode_message(topic, payload, now_ms(), SKEW_MS)


def test_valid_report_becomes_a_reading() -> None:
    record = _decode(TOPIC, report(seq=7, probabilities=[0, 0, 0, 0.5, 0.5]).SerializeToString())
    assert isinstance(record, Reading)
    assert (record.device_id, record.camera_id, record.segment_id, record.seq) == (
        "dev-1",
        "cam1",
        "seg-1",
        7,
    )
    assert record.level == 8.75
    assert record.label == "heavy"


@pytest.mark.parametrize(
    ("probabilities", "level"),
    [([1, 0, 0, 0, 0], 0.0), ([0, 0, 0, 0, 1], 10.0), ([0, 0, 1, 0, 0], 5.0), ([0.5, 0.5], 5.0)],
)
def test_levels_span_zero_to_ten(probabilities: list[float], level: float) -> None:
    assert level_from_probabilities(probabilities) == level


def test_late_reports_are_kept() -> None:
    day_old = now_ms() - 24 * 3600 * 1000
    assert isinstance(_decode(TOPIC, report(capture_time_ms=day_old).SerializeToString()), Reading)


def test_the_default_lateness_keeps_a_week_old_backlog() -> None:
    # The edge outbox keeps reports up to 7 days: such a backlog is never refused.
    week_old = now_ms() - 7 * 24 * 3600 * 1000 - 60_000
    record = _decode(TOPIC, report(capture_time_ms=week_old).SerializeToString())
    assert isinstance(record, Reading)


HOUR_MS = 3_600_000
CAPTURED = now_ms() - 60_000


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        (
            report(capture_time_ms=CAPTURED, window_start_ms=CAPTURED + HOUR_MS),
            "bad_time",
            "window_start_ms is 3600.0 s after capture_time_ms "
            "(a window cannot start after its newest frame)",
        ),
        (
            report(capture_time_ms=CAPTURED, window_start_ms=0),
            "bad_time",
            "window_start_ms is missing",
        ),
        (
            report(capture_time_ms=CAPTURED, window_start_ms=CAPTURED - 2000, frames=1),
            "bad_time",
            "window_start_ms is 2.0 s before capture_time_ms in a one-frame window "
            "(they must be equal)",
        ),
        (
            report(capture_time_ms=631_152_000_000),  # 1990-01-01
            "too_late",
            "capture_time_ms is {age} s old, older than the 1.2096e+06 s lateness limit "
            "(ingest.max_late_s)",
        ),
        (
            report(capture_time_ms=CAPTURED, window_start_ms=631_152_000_000),
            "too_late",
            "window_start_ms is {age} s old, older than the 1.2096e+06 s lateness limit "
            "(ingest.max_late_s)",
        ),
    ],
)
def test_impossible_or_too_old_times_are_rejected(message: object, code: str, reason: str) -> None:
    received = now_ms()
    payload = message.SerializeToString()  # type: ignore[attr-defined]
    record = decode_message(TOPIC, payload, received, SKEW_MS)
    assert isinstance(record, Rejected)
    assert (record.code, record.reason) == (
        code,
        reason.format(age=f"{(received - 631_152_000_000) / 1000:.0f}"),
    )


def test_the_lateness_limit_is_configurable() -> None:
    two_hours_old = report(capture_time_ms=now_ms() - 2 * HOUR_MS).SerializeToString()
    kept = decode_message(TOPIC, two_hours_old, now_ms(), SKEW_MS, max_late_ms=3 * HOUR_MS)
    refused = decode_message(TOPIC, two_hours_old, now_ms(), SKEW_MS, max_late_ms=HOUR_MS)
    assert isinstance(kept, Reading)
    assert isinstance(refused, Rejected)
    assert refused.code == "too_late"
    assert refused.reason.endswith("older than the 3600 s lateness limit (ingest.max_late_s)")


@pytest.mark.parametrize(
    ("topic", "message", "code", "reason"),
    [
        (
            "roadsense/v1/dev-2/cam1/congestion",
            report(),
            "device_mismatch",
            "does not match topic device 'dev-2'",
        ),
        (
            "roadsense/v1/dev-1/cam9/congestion",
            report(),
            "camera_mismatch",
            "does not match topic camera 'cam9'",
        ),
        (
            TOPIC,
            report(capture_time_ms=now_ms() + 3_600_000),
            "future",
            "in the future (limit 30 s)",
        ),
        (TOPIC, report(seq=0), "bad_field", "seq must be 1 or more"),
        (TOPIC, report(probabilities=[0.5, 0.5, 0.5, 0, 0]), "bad_probabilities", "sum to 1.5000"),
        (TOPIC, report(probabilities=[-0.5, 1.5, 0, 0, 0]), "bad_probabilities", "within 0..1"),
        (
            TOPIC,
            report(probabilities=[float("nan"), 1, 0, 0, 0]),
            "bad_probabilities",
            "finite",
        ),
        (TOPIC, report(probabilities=[0.5, 0.5]), "bad_probabilities", "2 probabilities for 5"),
        (
            TOPIC,
            report(labels=["only"], probabilities=[1.0]),
            "bad_probabilities",
            "at least two class labels",
        ),
        (TOPIC, report(segment="bad segment"), "bad_field", "segment_id 'bad segment'"),
        (TOPIC, report(frames=0), "bad_field", "frames_in_window must be 1 or more"),
        (
            "roadsense/v1/dev-1/status",
            status(device="dev-9"),
            "device_mismatch",
            "does not match topic device",
        ),
        ("weather/today", report(), "bad_topic", "not a RoadSense telemetry topic"),
    ],
)
def test_bad_messages_are_rejected_with_reason(
    topic: str, message: object, code: str, reason: str
) -> None:
    payload = message.SerializeToString()  # type: ignore[attr-defined]
    record = _decode(topic, payload)
    assert isinstance(record, Rejected)
    assert record.code == code
    assert reason in record.reason
    assert record.topic == topic
    assert record.payload == payload


def test_oversized_payload_is_rejected_and_truncated() -> None:
    record = decode_message(TOPIC, bytes(100_000), now_ms(), SKEW_MS, max_payload_bytes=65_536)
    assert isinstance(record, Rejected)
    assert record.code == "too_large"
    assert record.reason == "payload of 100000 bytes exceeds the 65536-byte limit"
    assert len(record.payload) == 1024


def test_garbage_payload_is_rejected() -> None:
    record = _decode(TOPIC, b"\xff\xff\xff not protobuf")
    assert isinstance(record, Rejected)
    assert "not a valid congestion protobuf" in record.reason
    assert record.code == "bad_protobuf"


def test_wrong_schema_version_is_rejected() -> None:
    message = report()
    message.schema_version = 99
    record = _decode(TOPIC, message.SerializeToString())
    assert isinstance(record, Rejected)
    assert "schema_version 99 is not supported" in record.reason


def test_status_and_health() -> None:
    birth = _decode("roadsense/v1/dev-1/status", status(online=True).SerializeToString())
    assert isinstance(birth, StatusUpdate)
    assert birth.online
    will = _decode("roadsense/v1/dev-1/status", status(online=False).SerializeToString())
    assert isinstance(will, StatusUpdate)
    assert not will.online
    health = telemetry_pb2.DeviceHealth(schema_version=1, device_id="dev-1", outbox_pending=4)
    record = _decode("roadsense/v1/dev-1/health", health.SerializeToString())
    assert isinstance(record, HealthRecord)
    assert '"outboxPending": "4"' in record.body_json


def test_fleet_registry_rejects_unknown_devices_and_cameras() -> None:
    known = {"dev-1": frozenset({"cam1"})}
    ok = decode_message(TOPIC, report().SerializeToString(), now_ms(), SKEW_MS, known_devices=known)
    assert isinstance(ok, Reading)
    stranger = decode_message(
        "roadsense/v1/dev-7/cam1/congestion",
        report(device="dev-7").SerializeToString(),
        now_ms(),
        SKEW_MS,
        known_devices=known,
    )
    assert isinstance(stranger, Rejected)
    assert stranger.code == "unknown_device"
    assert stranger.reason == "device 'dev-7' is not in the fleet"
    other_camera = decode_message(
        "roadsense/v1/dev-1/cam2/congestion",
        report(camera="cam2").SerializeToString(),
        now_ms(),
        SKEW_MS,
        known_devices=known,
    )
    assert isinstance(other_camera, Rejected)
    assert other_camera.code == "unknown_camera"


def test_city_camera_mapping_wins_over_the_device_segment() -> None:
    record = decode_message(
        TOPIC,
        report(segment="what-the-device-says").SerializeToString(),
        now_ms(),
        SKEW_MS,
        camera_segments={"dev-1/cam1": "ring-north"},
    )
    assert isinstance(record, Reading)
    assert record.segment_id == "ring-north"
