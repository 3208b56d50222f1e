"""The gRPC API refuses what it cannot mean: each refusal a clear status or a named item."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from roadsense.cloud.city.segments import SegmentConfig
from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.ingest.decode import decode_message
from roadsense.cloud.store.sqlite import SqliteStore
from roadsense.core.timeutil import now_ms
from roadsense.proto.v1 import city_pb2, city_pb2_grpc, fleet_pb2, fleet_pb2_grpc

from ..support.factories import status
from ..support.helpers import api_channel

pytestmark = pytest.mark.integration

RING = SegmentConfig(id="ring", name="Ring Rd", road_class="motorway", length_m=1000)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "city.sqlite")
    yield store
    store.close()


@pytest.fixture
def channel(store: SqliteStore) -> Iterator[grpc.Channel]:
    with api_channel(store, city=[RING], fleet_devices=frozenset({"dev-listed"})) as channel:
        yield channel


def _code(call: grpc.RpcError) -> tuple[grpc.StatusCode, str | None]:
    return call.code(), call.details()


def _rows(path: Path, query: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def test_revoking_an_unknown_device_is_not_found_and_records_nothing(
    store: SqliteStore, channel: grpc.Channel, tmp_path: Path
) -> None:
    fleet = fleet_pb2_grpc.FleetServiceStub(channel)
    with pytest.raises(grpc.RpcError) as unknown:
        fleet.RevokeDevice(fleet_pb2.RevokeDeviceRequest(device_id="dev-typo"), timeout=5)
    assert _code(unknown.value) == (
        grpc.StatusCode.NOT_FOUND,
        "no device 'dev-typo': neither the fleet nor the cloud's registry knows it",
    )
    with pytest.raises(grpc.RpcError) as long_reason:
        fleet.RevokeDevice(
            fleet_pb2.RevokeDeviceRequest(device_id="dev-listed", reason="x" * 201), timeout=5
        )
    assert _code(long_reason.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert store.registry() == {}

    # A device that sent telemetry, and one the configuration lists, can be revoked.
    birth = decode_message("roadsense/v1/dev-1/status", status().SerializeToString(), now_ms(), 0)
    store.write_batch([birth], CityTracker(60_000).apply)
    seen = fleet.RevokeDevice(
        fleet_pb2.RevokeDeviceRequest(device_id="dev-1", reason="stolen"), timeout=5
    )
    listed = fleet.RevokeDevice(fleet_pb2.RevokeDeviceRequest(device_id="dev-listed"), timeout=5)
    assert (seen.device.revoked, listed.device.revoked) == (True, True)
    assert _rows(
        tmp_path / "city.sqlite",
        "SELECT device_id, enrolled_ms, revoke_reason FROM fleet_registry ORDER BY device_id",
    ) == [("dev-1", 0, "stolen"), ("dev-listed", 0, "")]


@pytest.mark.parametrize(
    ("from_ms", "to_ms", "details"),
    [
        (
            -7_200_000,
            -3_600_000,
            "from_ms and to_ms are UTC ms since 1970 and cannot be negative "
            "(got from_ms -7200000, to_ms -3600000)",
        ),
        (
            0,
            -1,
            "from_ms and to_ms are UTC ms since 1970 and cannot be negative "
            "(got from_ms 0, to_ms -1)",
        ),
        (2_000, 1_000, "from_ms 2000 is after to_ms 1000"),
    ],
)
def test_a_segment_history_range_must_run_forward_from_1970(
    channel: grpc.Channel, from_ms: int, to_ms: int, details: str
) -> None:
    city = city_pb2_grpc.CityServiceStub(channel)
    request = city_pb2.GetSegmentRequest(segment_id="ring", from_ms=from_ms, to_ms=to_ms)
    with pytest.raises(grpc.RpcError) as refused:
        city.GetSegment(request, timeout=5)
    assert _code(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, details)


@pytest.mark.parametrize("level", [math.nan, math.inf, -math.inf, -0.5, 10.5])
def test_city_state_min_level_must_be_on_the_0_to_10_scale(
    channel: grpc.Channel, level: float
) -> None:
    city = city_pb2_grpc.CityServiceStub(channel)
    with pytest.raises(grpc.RpcError) as refused:
        city.GetCityState(city_pb2.GetCityStateRequest(min_level=level), timeout=5)
    assert _code(refused.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"min_level must be a number within 0..10, not {level!r}",
    )
    assert city.GetCityState(city_pb2.GetCityStateRequest(min_level=10.0), timeout=5)


def test_city_state_road_classes_must_be_known(channel: grpc.Channel) -> None:
    city = city_pb2_grpc.CityServiceStub(channel)
    with pytest.raises(grpc.RpcError) as refused:
        city.GetCityState(city_pb2.GetCityStateRequest(road_classes=["freeway"]), timeout=5)
    assert _code(refused.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "road_classes 'freeway' not known; use motorway, trunk, primary, secondary, local",
    )


def _observation(**fields: object) -> city_pb2.Observation:
    values: dict[str, object] = {
        "segment_id": "ring",
        "time_ms": now_ms() - 60_000,
        "value": 42.0,
        "unit": "km/h",
        "source": "loop-7",
    }
    values.update(fields)
    return city_pb2.Observation(**values)  # type: ignore[arg-type]


def test_observations_are_bounded_per_unit_and_each_refusal_is_named(
    channel: grpc.Channel, tmp_path: Path
) -> None:
    t = now_ms() - 60_000
    items = [
        _observation(time_ms=t, value=-50.0),
        _observation(time_ms=t, value=1e308),
        _observation(time_ms=t, unit="u" * 10_000),
        _observation(time_ms=t, unit="furlongs/fortnight"),
        _observation(time_ms=t, value=math.inf),
        _observation(time_ms=t, unit="%", value=150.0),
        _observation(time_ms=t, segment_id="s" * 65),
        _observation(time_ms=t, source="f" * 129),
        _observation(time_ms=t, source="feed\nnext"),
        _observation(time_ms=t, value=55.5),
        _observation(time_ms=t, unit="%", value=35.0, source="loop-8"),
    ]
    city = city_pb2_grpc.CityServiceStub(channel)
    response = city.IngestObservations(
        city_pb2.IngestObservationsRequest(observations=items), timeout=5
    )
    assert (response.accepted, response.duplicates) == (2, 0)
    units = "km/h, mph, m/s, veh/h, %"
    assert [(r.index, r.reason) for r in response.rejected] == [
        (0, "value -50 km/h is outside 0..300 km/h"),
        (1, "value 1e+308 km/h is outside 0..300 km/h"),
        (2, f"unit {'u' * 40!r}... (10000 characters) is not one of {units}"),
        (3, f"unit 'furlongs/fortnight' is not one of {units}"),
        (4, "value is not a finite number"),
        (5, "value 150 % is outside 0..100 %"),
        (6, f"segment_id {'s' * 40!r}... (65 characters) is not a valid identifier"),
        (
            7,
            f"source {'f' * 40!r}... (129 characters) is not a name of at most 128 printable "
            "characters",
        ),
        (8, "source 'feed\\nnext' is not a name of at most 128 printable characters"),
    ]
    assert _rows(
        tmp_path / "city.sqlite",
        "SELECT segment_id, time_ms, source, value, unit FROM observations ORDER BY source",
    ) == [("ring", t, "loop-7", 55.5, "km/h"), ("ring", t, "loop-8", 35.0, "%")]


def test_weather_codes_are_short_tokens(channel: grpc.Channel, tmp_path: Path) -> None:
    t = now_ms() - 60_000
    items = [
        city_pb2.WeatherObservation(time_ms=t, code="w" * 100_000, source="met"),
        city_pb2.WeatherObservation(time_ms=t, code="light rain", source="met"),
        city_pb2.WeatherObservation(time_ms=t, code="2", source="m" * 129),
        city_pb2.WeatherObservation(time_ms=t, code="2", source="met"),
    ]
    city = city_pb2_grpc.CityServiceStub(channel)
    response = city.IngestWeather(city_pb2.IngestWeatherRequest(weather=items), timeout=5)
    rule = "is not a weather code: 1 to 32 letters, digits, '_', '.' or '-'"
    assert (response.accepted, [(r.index, r.reason) for r in response.rejected]) == (
        1,
        [
            (0, f"code {'w' * 40!r}... (100000 characters) {rule}"),
            (1, f"code 'light rain' {rule}"),
            (
                2,
                f"source {'m' * 40!r}... (129 characters) is not a name of at most 128 "
                "printable characters",
            ),
        ],
    )
    assert _rows(tmp_path / "city.sqlite", "SELECT time_ms, source, code FROM weather") == [
        (t, "met", "2")
    ]


def test_a_refusal_quotes_little_of_a_bad_value(channel: grpc.Channel) -> None:
    escapes = "\x00" * 50  # each shown as \x00: four characters
    city = city_pb2_grpc.CityServiceStub(channel)
    response = city.IngestObservations(
        city_pb2.IngestObservationsRequest(observations=[_observation(source=escapes)]), timeout=5
    )
    assert [r.reason for r in response.rejected] == [
        f"source {chr(0) * 10!r}... (50 characters) is not a name of at most 128 printable "
        "characters"
    ]
