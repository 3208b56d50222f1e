"""Fuzzing the two untrusted decoders at a small budget.

MQTT: arbitrary and mutated topics and payloads into ``decode_message`` always give
a record (a Rejected one with a code and reason), never an exception, and what
it accepts holds the ingest's invariants. gRPC: arbitrary request messages into
CityService and FleetService over a real server on 127.0.0.1 port 0 answer OK or a
deliberate status, never UNKNOWN or INTERNAL (a servicer's traceback is also
logged at ERROR, which fails the test through conftest).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadsense.cloud.city.segments import ROAD_CLASS_WEIGHT, SegmentConfig
from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.domain import HealthRecord, Reading, Rejected, StatusUpdate
from roadsense.cloud.forecast.feeds import UNIT_RANGES
from roadsense.cloud.ingest.decode import PROBABILITY_SUM_TOLERANCE, decode_message
from roadsense.cloud.store.sqlite import SqliteStore
from roadsense.core.timeutil import now_ms
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.v1 import city_pb2, city_pb2_grpc, fleet_pb2, fleet_pb2_grpc, telemetry_pb2

from .support.factories import report, status
from .support.helpers import api_channel

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
UINT32 = st.integers(0, 2**32 - 1)
NOW = now_ms()
TIMES = st.one_of(INT64, st.integers(NOW - 30 * 86_400_000, NOW + 120_000))
IDS = st.one_of(st.sampled_from(["dev-1", "cam1", "seg-1", "ring"]), st.text(max_size=80))
TEXT = st.text(max_size=120)


# MQTT -------------------------------------------------------------------------------------

REPORT_FIELDS: dict[str, st.SearchStrategy[object]] = {
    "schema_version": UINT32,
    "device_id": IDS,
    "camera_id": IDS,
    "segment_id": IDS,
    "seq": UINT64,
    "model_version": TEXT,
    "labels": st.lists(TEXT, max_size=6),
    "probabilities": st.lists(st.floats(width=32), max_size=6),
    "frames_in_window": UINT32,
}
TIME_FIELDS = ("capture_time_ms", "window_start_ms")


@st.composite
def _reports(draw: st.DrawFn) -> telemetry_pb2.CongestionReport:
    """A valid report of about now with a field or two set to anything their type holds,
    times mostly around the report's own (days back, an hour ahead, zero)."""
    captured = NOW - draw(st.integers(0, 60_000))
    message = report(capture_time_ms=captured)
    near = st.one_of(
        st.integers(-40 * 86_400_000, 3_600_000).map(lambda offset: captured + offset),
        st.just(0),
        INT64,
    )
    names = st.sampled_from([*TIME_FIELDS, *TIME_FIELDS, *sorted(REPORT_FIELDS)])
    for name in draw(st.sets(names, max_size=2)):
        value = draw(near if name in TIME_FIELDS else REPORT_FIELDS[name])
        if isinstance(value, list):
            message.ClearField(name)
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid report, status or health payload with bytes flipped, cut or inserted."""
    base = bytearray(
        draw(
            st.sampled_from(
                [
                    report().SerializeToString(),
                    report(probabilities=[0.2, 0.2, 0.2, 0.2, 0.2]).SerializeToString(),
                    status().SerializeToString(),
                    telemetry_pb2.DeviceHealth(
                        schema_version=SCHEMA_VERSION, device_id="dev-1", uptime_s=3.0
                    ).SerializeToString(),
                ]
            )
        )
    )
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, len(base)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and where < len(base):
            base[where] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del base[where : where + draw(st.integers(1, 8))]
        else:
            base[where:where] = draw(st.binary(min_size=1, max_size=8))
    return bytes(base)


@st.composite
def _messages(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["report", "report", "report", "mutated", "bytes"]))
    if kind == "report":
        structured = draw(_reports())
        own = f"roadsense/v1/{structured.device_id}/{structured.camera_id}/congestion"
        topic = draw(st.one_of(st.just(own), st.just(own), st.text(max_size=100)))
        return topic, structured.SerializeToString()
    topic = draw(
        st.one_of(
            st.sampled_from(
                [
                    "roadsense/v1/dev-1/cam1/congestion",
                    "roadsense/v1/dev-1/status",
                    "roadsense/v1/dev-1/health",
                    "roadsense/v1/dev-1/cmd/config",
                ]
            ),
            st.text(max_size=100),
        )
    )
    return topic, draw(_mutated() if kind == "mutated" else st.binary(max_size=300))


def _check_reading(record: Reading, received: int, future_ms: int, late_ms: int) -> None:
    assert record.window_start_ms > 0
    assert record.window_start_ms <= record.capture_time_ms <= received + future_ms
    assert received - record.window_start_ms <= late_ms
    assert record.seq >= 1
    assert record.frames_in_window >= 1
    assert len(record.labels) == len(record.probabilities) >= 2
    assert all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in record.probabilities)
    assert abs(sum(record.probabilities) - 1.0) <= PROBABILITY_SUM_TOLERANCE
    assert 0.0 <= record.level <= 10.0


@FUZZ
@given(
    message=_messages(),
    received=st.one_of(st.integers(NOW, NOW + 60_000), st.integers(0, 2**62)),
    future_ms=st.integers(0, 10**9),
    late_ms=st.integers(1, 10**12),
    max_bytes=st.integers(256, 100_000),
)
def test_any_mqtt_message_decodes_to_a_record_never_an_exception(
    message: tuple[str, bytes], received: int, future_ms: int, late_ms: int, max_bytes: int
) -> None:
    topic, payload = message
    record = decode_message(
        topic,
        payload,
        received,
        future_ms,
        max_bytes,
        known_devices={"dev-1": frozenset({"cam1"})} if received % 3 == 0 else None,
        revoked_devices=frozenset({"dev-9"}),
        max_late_ms=late_ms,
    )
    assert isinstance(record, Reading | StatusUpdate | HealthRecord | Rejected)
    if isinstance(record, Rejected):
        assert record.code
        assert record.reason
        assert record.topic == topic
        assert len(record.payload) <= max(len(payload), 1024)
    elif isinstance(record, Reading):
        _check_reading(record, received, future_ms, late_ms)


def test_a_report_near_now_still_decodes() -> None:
    # The fuzz strategies are not so wild that nothing valid ever gets through.
    record = decode_message(
        "roadsense/v1/dev-1/cam1/congestion", report().SerializeToString(), now_ms(), 30_000
    )
    assert isinstance(record, Reading)


# gRPC -------------------------------------------------------------------------------------

DELIBERATE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE,
}
CLASSES = set(ROAD_CLASS_WEIGHT)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
UNITS = st.one_of(st.sampled_from(sorted(UNIT_RANGES)), TEXT)
OBSERVATIONS = st.builds(
    city_pb2.Observation,
    segment_id=IDS,
    time_ms=TIMES,
    value=FLOATS,
    unit=UNITS,
    source=TEXT,
)
WEATHER = st.builds(
    city_pb2.WeatherObservation, time_ms=TIMES, code=st.one_of(st.just("2"), TEXT), source=TEXT
)
CITY_REQUESTS: st.SearchStrategy[tuple[str, Message]] = st.one_of(
    st.tuples(
        st.just("GetCityState"),
        st.builds(
            city_pb2.GetCityStateRequest,
            segment_ids=st.lists(IDS, max_size=5),
            min_level=FLOATS,
            road_classes=st.lists(st.one_of(st.just("motorway"), TEXT), max_size=3),
            exclude_stale=st.booleans(),
        ),
    ),
    st.tuples(
        st.just("GetSegment"),
        st.builds(city_pb2.GetSegmentRequest, segment_id=IDS, from_ms=TIMES, to_ms=TIMES),
    ),
    st.tuples(st.just("ListSegments"), st.just(city_pb2.ListSegmentsRequest())),
    st.tuples(
        st.just("IngestObservations"),
        st.builds(
            city_pb2.IngestObservationsRequest,
            observations=st.lists(OBSERVATIONS, max_size=8),
        ),
    ),
    st.tuples(
        st.just("IngestWeather"),
        st.builds(city_pb2.IngestWeatherRequest, weather=st.lists(WEATHER, max_size=8)),
    ),
    st.tuples(
        st.just("GetForecast"),
        st.builds(
            city_pb2.GetForecastRequest,
            segment_ids=st.lists(IDS, max_size=5),
            horizons=st.lists(UINT32, max_size=5),
        ),
    ),
)
FLEET_REQUESTS: st.SearchStrategy[tuple[str, Message]] = st.one_of(
    st.tuples(
        st.just("RevokeDevice"),
        st.builds(fleet_pb2.RevokeDeviceRequest, device_id=IDS, reason=TEXT),
    ),
    st.tuples(st.just("GetDevice"), st.builds(fleet_pb2.GetDeviceRequest, device_id=IDS)),
    st.tuples(st.just("ListDevices"), st.just(fleet_pb2.ListDevicesRequest())),
    st.tuples(
        st.just("Enroll"),
        st.builds(fleet_pb2.EnrollRequest, token=TEXT, csr_pem=st.binary(max_size=200)),
    ),
)


FLEET_MESSAGES = (
    fleet_pb2.RevokeDeviceRequest,
    fleet_pb2.GetDeviceRequest,
    fleet_pb2.ListDevicesRequest,
    fleet_pb2.EnrollRequest,
)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[grpc.Channel, SqliteStore]]:
    store = SqliteStore(tmp_path / "city.sqlite")
    tracker = CityTracker(120_000)
    seed = decode_message(
        "roadsense/v1/dev-1/cam1/congestion", report().SerializeToString(), now_ms(), 30_000
    )
    store.write_batch([seed], tracker.apply)
    ring = SegmentConfig(id="ring", name="Ring Rd", road_class="motorway")
    try:
        with api_channel(store, city=[ring], tracker=tracker) as channel:
            yield channel, store
    finally:
        store.close()


def _check_ingest(message: Message, response: city_pb2.IngestResponse) -> None:
    """Every item is accounted for once; refusals name it, briefly."""
    if isinstance(message, city_pb2.IngestObservationsRequest):
        items = len(message.observations)
    else:
        assert isinstance(message, city_pb2.IngestWeatherRequest)
        items = len(message.weather)
    indexes = [r.index for r in response.rejected]
    assert response.accepted + response.duplicates + len(indexes) == items
    assert indexes == sorted(set(indexes))
    assert all(0 <= i < items for i in indexes)
    assert all(0 < len(r.reason) <= 200 for r in response.rejected)


@settings(FUZZ, max_examples=200)
@given(request=st.one_of(CITY_REQUESTS, FLEET_REQUESTS))
def test_any_request_gets_a_deliberate_status(
    api: tuple[grpc.Channel, SqliteStore], request: tuple[str, Message]
) -> None:
    channel, store = api
    method, message = request
    fleet = isinstance(message, FLEET_MESSAGES)
    stub = (fleet_pb2_grpc.FleetServiceStub if fleet else city_pb2_grpc.CityServiceStub)(channel)
    try:
        code, response = grpc.StatusCode.OK, getattr(stub, method)(message, timeout=10)
    except grpc.RpcError as err:
        code, response = err.code(), None
    assert code in DELIBERATE, (method, message, code)
    if isinstance(message, city_pb2.GetCityStateRequest):
        level = message.min_level
        assert (code is grpc.StatusCode.OK) == (
            math.isfinite(level) and 0 <= level <= 10 and set(message.road_classes) <= CLASSES
        )
    if isinstance(response, city_pb2.IngestResponse):
        _check_ingest(message, response)
    for stored in store.observations("ring", -(2**63), 2**63 - 1):
        low, high = UNIT_RANGES[stored.unit]
        assert low <= stored.value <= high, stored
    # Only a device the cloud knows (here dev-1, from telemetry) can enter the registry.
    assert set(store.registry()) <= {"dev-1"}


@settings(FUZZ, max_examples=30)
@given(segment_ids=st.lists(IDS, max_size=5))
def test_any_watch_request_starts_with_a_snapshot(
    api: tuple[grpc.Channel, SqliteStore], segment_ids: list[str]
) -> None:
    channel, _ = api
    stub = city_pb2_grpc.CityServiceStub(channel)
    stream = stub.WatchCityState(
        city_pb2.WatchCityStateRequest(segment_ids=segment_ids), timeout=10
    )
    first = next(stream)
    stream.cancel()
    assert first.HasField("snapshot")
