"""Decode and validate one MQTT message into a domain record.

Pure functions, no I/O: a bad message becomes a ``Rejected`` record with a
reason (kept in the dead-letter table), never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from google.protobuf.json_format import MessageToJson
from google.protobuf.message import DecodeError

from roadsense.cloud.domain import HealthRecord, Reading, Rejected, StatusUpdate, Telemetry
from roadsense.cloud.ingest.congestion import level_from_probabilities
from roadsense.cloud.ingest.measured import level_of, read_measurements
from roadsense.proto import REPORT_SCHEMA_VERSIONS, SCHEMA_VERSION
from roadsense.proto.topics import TopicKind, is_identifier, parse_topic
from roadsense.proto.v1 import telemetry_pb2

PROBABILITY_SUM_TOLERANCE = 0.02
Problem = tuple[str, str]
"""(code, reason): the code names the kind of problem for metrics; the reason explains it."""
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024
KEPT_BYTES_OF_OVERSIZED = 1024
"""Dead letters keep only the head of an oversized payload."""
DEFAULT_MAX_LATE_MS = 14 * 24 * 3600 * 1000
"""Reports captured longer ago than this are dead-lettered: twice the edge outbox's default
age limit (7 days), so a device's own backlog is never refused even after a cloud outage."""


def decode_message(
    topic: str,
    payload: bytes,
    received_ms: int,
    max_future_ms: int,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    *,
    known_devices: Mapping[str, frozenset[str]] | None = None,
    camera_segments: Mapping[str, str] | None = None,
    revoked_devices: frozenset[str] = frozenset(),
    max_late_ms: int = DEFAULT_MAX_LATE_MS,
) -> Telemetry:
    """Turn a message into a Reading, StatusUpdate, HealthRecord or Rejected.

    ``known_devices`` (device id → camera ids), when not empty, is the fleet
    registry: anything from another device or camera is rejected.
    ``camera_segments`` ("device/camera" → segment id) is the city's own
    camera-to-segment mapping, which wins over the segment a report names.
    Anything from a device in ``revoked_devices`` is rejected: its connection
    may outlive the revocation until the broker reloads the CRL. A report captured more
    than ``max_late_ms`` before it was received is rejected (``too_late``); so is one whose
    times contradict each other (``bad_time``: a window that starts after its capture time or
    not at all).
    """
    if len(payload) > max_payload_bytes:
        return Rejected(
            topic,
            f"payload of {len(payload)} bytes exceeds the {max_payload_bytes}-byte limit",
            payload[:KEPT_BYTES_OF_OVERSIZED],
            received_ms,
            code="too_large",
        )
    parsed = parse_topic(topic)
    if parsed is None:
        return Rejected(
            topic, "topic is not a RoadSense telemetry topic", payload, received_ms, "bad_topic"
        )

    def reject(problem: Problem) -> Rejected:
        code, reason = problem
        return Rejected(topic, reason, payload, received_ms, code)

    if parsed.device_id in revoked_devices:
        return reject(("revoked_device", f"device {parsed.device_id!r} is revoked"))
    if known_devices:
        cameras = known_devices.get(parsed.device_id)
        if cameras is None:
            return reject(("unknown_device", f"device {parsed.device_id!r} is not in the fleet"))
        if parsed.camera_id is not None and parsed.camera_id not in cameras:
            return reject(
                (
                    "unknown_camera",
                    f"camera {parsed.camera_id!r} is not registered for {parsed.device_id!r}",
                )
            )

    try:
        if parsed.kind is TopicKind.CONGESTION:
            report = telemetry_pb2.CongestionReport.FromString(payload)
        elif parsed.kind is TopicKind.STATUS:
            status = telemetry_pb2.DeviceStatus.FromString(payload)
        else:
            health = telemetry_pb2.DeviceHealth.FromString(payload)
    except DecodeError as err:
        return reject(
            ("bad_protobuf", f"payload is not a valid {parsed.kind.value} protobuf: {err}")
        )

    if parsed.kind is TopicKind.CONGESTION:
        problem = _report_problem(
            report,
            parsed.device_id,
            parsed.camera_id,
            received_ms,
            max_future_ms,
            max_late_ms=max_late_ms,
        )
        if problem:
            return reject(problem)
        measured = None
        if report.HasField("measurements"):
            measured, problem = read_measurements(report.measurements)
            if problem:
                return reject(problem)
        probabilities = tuple(float(p) for p in report.probabilities)
        mapped = (camera_segments or {}).get(f"{report.device_id}/{report.camera_id}")
        return Reading(
            device_id=report.device_id,
            camera_id=report.camera_id,
            segment_id=mapped or report.segment_id,
            seq=report.seq,
            capture_time_ms=report.capture_time_ms,
            window_start_ms=report.window_start_ms,
            received_ms=received_ms,
            model_version=report.model_version,
            labels=tuple(report.labels),
            probabilities=probabilities,
            frames_in_window=report.frames_in_window,
            level=level_of(measured) if measured else level_from_probabilities(probabilities),
            measured=measured,
        )
    if parsed.kind is TopicKind.STATUS:
        problem = _common_problem(status.schema_version, status.device_id, parsed.device_id)
        if problem:
            return reject(problem)
        if status.state == telemetry_pb2.DeviceStatus.STATE_UNSPECIFIED:
            return reject(("bad_field", "status has no state"))
        return StatusUpdate(
            device_id=status.device_id,
            online=status.state == telemetry_pb2.DeviceStatus.ONLINE,
            time_ms=status.time_ms,
            received_ms=received_ms,
            agent_version=status.agent_version,
            model_version=status.model_version,
            camera_ids=tuple(status.camera_ids),
        )
    problem = _common_problem(health.schema_version, health.device_id, parsed.device_id)
    if problem:
        return reject(problem)
    return HealthRecord(
        device_id=health.device_id,
        time_ms=health.time_ms,
        received_ms=received_ms,
        body_json=MessageToJson(health, indent=None),
    )


def _common_problem(
    schema_version: int,
    device_id: str,
    topic_device: str,
    supported: tuple[int, ...] = (SCHEMA_VERSION,),
) -> Problem | None:
    if schema_version not in supported:
        expected = " or ".join(str(v) for v in supported)
        return (
            "schema",
            f"schema_version {schema_version} is not supported (expected {expected})",
        )
    if device_id != topic_device:
        return (
            "device_mismatch",
            f"payload device_id {device_id!r} does not match topic device {topic_device!r}",
        )
    return None


def _report_problem(
    report: telemetry_pb2.CongestionReport,
    topic_device: str,
    topic_camera: str | None,
    received_ms: int,
    max_future_ms: int,
    *,
    max_late_ms: int,
) -> Problem | None:
    problem = _common_problem(
        report.schema_version, report.device_id, topic_device, REPORT_SCHEMA_VERSIONS
    )
    if problem:
        return problem
    if report.schema_version < 2 and report.HasField("measurements"):
        return ("schema", "measurements need schema_version 2")
    if report.camera_id != topic_camera:
        return (
            "camera_mismatch",
            f"payload camera_id {report.camera_id!r} does not match topic camera {topic_camera!r}",
        )
    if not is_identifier(report.segment_id):
        return ("bad_field", f"segment_id {report.segment_id!r} is not a valid identifier")
    if report.seq == 0:
        return ("bad_field", "seq must be 1 or more")
    if report.capture_time_ms <= 0:
        return ("bad_field", "capture_time_ms is missing")
    if report.capture_time_ms > received_ms + max_future_ms:
        ahead = (report.capture_time_ms - received_ms) / 1000
        return (
            "future",
            f"capture_time_ms is {ahead:.1f} s in the future (limit {max_future_ms / 1000:g} s)",
        )
    if report.frames_in_window == 0:
        return ("bad_field", "frames_in_window must be 1 or more")
    return _time_problem(report, received_ms, max_late_ms) or _probability_problem(report)


def _time_problem(
    report: telemetry_pb2.CongestionReport, received_ms: int, max_late_ms: int
) -> Problem | None:
    """Impossible time relations (bad_time) and reports too old to take (too_late)."""
    captured, started = report.capture_time_ms, report.window_start_ms
    if started <= 0:
        return ("bad_time", "window_start_ms is missing")
    if started > captured:
        return (
            "bad_time",
            f"window_start_ms is {(started - captured) / 1000:.1f} s after capture_time_ms "
            "(a window cannot start after its newest frame)",
        )
    if report.frames_in_window == 1 and started != captured:
        return (
            "bad_time",
            f"window_start_ms is {(captured - started) / 1000:.1f} s before capture_time_ms "
            "in a one-frame window (they must be equal)",
        )
    for name, time_ms in (("capture_time_ms", captured), ("window_start_ms", started)):
        if received_ms - time_ms > max_late_ms:
            return (
                "too_late",
                f"{name} is {(received_ms - time_ms) / 1000:.0f} s old, older than the "
                f"{max_late_ms / 1000:g} s lateness limit (ingest.max_late_s)",
            )
    return None


def _probability_problem(report: telemetry_pb2.CongestionReport) -> Problem | None:
    if len(report.labels) < 2:
        return ("bad_probabilities", "report needs at least two class labels")
    if len(report.labels) != len(report.probabilities):
        return (
            "bad_probabilities",
            f"{len(report.probabilities)} probabilities for {len(report.labels)} labels",
        )
    if any(not math.isfinite(p) or p < 0.0 or p > 1.0 for p in report.probabilities):
        return ("bad_probabilities", "probabilities must be finite and within 0..1")
    total = sum(report.probabilities)
    if abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
        return ("bad_probabilities", f"probabilities sum to {total:.4f}, not 1")
    return None
