"""ListSegments and GetSegment on a real gRPC server, with a configured city."""

from __future__ import annotations

import re
from collections.abc import Iterator

import grpc
import pytest

from roadsense.cloud.app import CloudService
from roadsense.cloud.city.segments import SegmentConfig
from roadsense.cloud.config import CloudConfig
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.core.timeutil import now_ms
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

from ..support.factories import report
from ..support.helpers import running_cloud, wait_until

pytestmark = pytest.mark.integration

RING = SegmentConfig(
    id="api-ring",
    name="Ring Rd northbound",
    road_class="motorway",
    length_m=1800,
    coordinates=[(22.54, 114.05), (22.55, 114.06)],
    direction="northbound",
)
QUIET = SegmentConfig(id="api-quiet", name="Quiet Lane", road_class="local", length_m=300)


@pytest.fixture
def city(cloud_config: CloudConfig) -> Iterator[CloudService]:
    with running_cloud(cloud_config.model_copy(update={"segments": [RING, QUIET]})) as service:
        yield service


def test_segments_from_config_and_reports(city: CloudService, mqtt_config: MqttConfig) -> None:
    publisher = MqttPublisher(mqtt_config, client_id="api-dev")
    publisher.start()
    assert publisher.wait_connected(10.0)
    t = now_ms()
    for seq, (segment, jam) in enumerate(
        [("api-ring", 1.0), ("api-ring", 1.0), ("api-adhoc", 0.0)], start=1
    ):
        probabilities = [1.0 - jam, 0, 0, 0, jam]
        message = report(
            device="api-dev",
            seq=seq,
            segment=segment,
            probabilities=probabilities,
            capture_time_ms=t - 1000 + seq,
        )
        publisher.publish("roadsense/v1/api-dev/cam1/congestion", message.SerializeToString())
    assert wait_until(lambda: len([k for k in city.store.report_keys() if k[0] == "api-dev"]) == 3)
    publisher.stop()

    with grpc.insecure_channel(city.address) as channel:
        stub = city_pb2_grpc.CityServiceStub(channel)
        listed = stub.ListSegments(city_pb2.ListSegmentsRequest(), timeout=5)
        infos = {s.segment_id: s for s in listed.segments}
        assert {"api-ring", "api-quiet", "api-adhoc"} <= set(infos)
        assert infos["api-ring"].configured
        assert infos["api-ring"].road_class == "motorway"
        assert [(c.lat, c.lon) for c in infos["api-ring"].coordinates] == RING.coordinates
        assert not infos["api-adhoc"].configured
        assert infos["api-adhoc"].name == "api-adhoc"

        ring = stub.GetSegment(city_pb2.GetSegmentRequest(segment_id="api-ring"), timeout=5)
        assert ring.info.name == "Ring Rd northbound"
        assert ring.state.reports == 2
        assert ring.state.level == 10.0
        assert ring.interval_ms == 60_000
        assert sum(p.reports for p in ring.history) == 2
        assert all(p.level == 10.0 for p in ring.history)

        quiet = stub.GetSegment(city_pb2.GetSegmentRequest(segment_id="api-quiet"), timeout=5)
        assert quiet.info.configured
        assert not quiet.HasField("state")
        assert not quiet.history

        with pytest.raises(grpc.RpcError) as missing:
            stub.GetSegment(city_pb2.GetSegmentRequest(segment_id="nowhere"), timeout=5)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert missing.value.details() == "no segment 'nowhere'"
        with pytest.raises(grpc.RpcError) as backwards:
            stub.GetSegment(
                city_pb2.GetSegmentRequest(segment_id="api-ring", from_ms=t, to_ms=t - 1), timeout=5
            )
        assert backwards.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        state = stub.GetCityState(
            city_pb2.GetCityStateRequest(segment_ids=["api-ring", "api-adhoc"]), timeout=5
        )
    # 1800 m motorway (x3) at 10 against an unconfigured segment (weight 1) at 0.
    assert state.congestion_index == round(5400 * 10 / 5401, 3)
    assert dict(state.segments_per_band) == {"severe": 1, "free": 1}


def test_feeds_store_good_items_and_name_the_bad_ones(city: CloudService) -> None:
    t = now_ms() - 60_000
    observations = [
        city_pb2.Observation(
            segment_id="api-ring", time_ms=t, value=42.5, unit="km/h", source="feed-a"
        ),
        city_pb2.Observation(segment_id="bad id", time_ms=t, value=1, unit="km/h", source="feed-a"),
        city_pb2.Observation(
            segment_id="api-ring", time_ms=t - 900_000, value=40.0, unit="km/h", source="feed-a"
        ),
        city_pb2.Observation(
            segment_id="api-ring", time_ms=t, value=float("nan"), unit="km/h", source="feed-a"
        ),
        city_pb2.Observation(
            segment_id="api-ring", time_ms=now_ms() + 3_600_000, value=1, unit="km/h", source="a"
        ),
    ]
    with grpc.insecure_channel(city.address) as channel:
        stub = city_pb2_grpc.CityServiceStub(channel)
        first = stub.IngestObservations(
            city_pb2.IngestObservationsRequest(observations=observations), timeout=5
        )
        again = stub.IngestObservations(
            city_pb2.IngestObservationsRequest(observations=observations[:1]), timeout=5
        )
        weather = stub.IngestWeather(
            city_pb2.IngestWeatherRequest(
                weather=[
                    city_pb2.WeatherObservation(time_ms=t, code="2", source="sz-weather"),
                    city_pb2.WeatherObservation(time_ms=t, code="", source="sz-weather"),
                ]
            ),
            timeout=5,
        )
        too_many = [observations[0]] * 10_001
        with pytest.raises(grpc.RpcError) as big:
            stub.IngestObservations(
                city_pb2.IngestObservationsRequest(observations=too_many), timeout=10
            )
    assert (first.accepted, first.duplicates) == (2, 0)
    assert [(r.index, r.reason) for r in first.rejected[:2]] == [
        (1, "segment_id 'bad id' is not a valid identifier"),
        (3, "value is not a finite number"),
    ]
    assert first.rejected[2].index == 4
    assert re.fullmatch(r"time_ms is 3\d{3}\.\d s in the future", first.rejected[2].reason)
    assert (again.accepted, again.duplicates) == (0, 1)
    assert (weather.accepted, [r.reason for r in weather.rejected]) == (1, ["code is missing"])
    assert big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stored = city.store.observations("api-ring", t - 1_000_000, t)
    assert [(o.time_ms, o.value) for o in stored] == [(t - 900_000, 40.0), (t, 42.5)]


def test_city_state_filters(city: CloudService, mqtt_config: MqttConfig) -> None:
    publisher = MqttPublisher(mqtt_config, client_id="filter-dev")
    publisher.start()
    assert publisher.wait_connected(10.0)
    for seq, (segment, jam) in enumerate([("api-ring", 1.0), ("api-quiet", 0.0)], start=1):
        message = report(
            device="filter-dev", seq=seq, segment=segment, probabilities=[1 - jam, 0, 0, 0, jam]
        )
        publisher.publish("roadsense/v1/filter-dev/cam1/congestion", message.SerializeToString())
    assert wait_until(
        lambda: len([k for k in city.store.report_keys() if k[0] == "filter-dev"]) == 2
    )
    publisher.stop()
    with grpc.insecure_channel(city.address) as channel:
        stub = city_pb2_grpc.CityServiceStub(channel)

        def ids(**filters: object) -> list[str]:
            request = city_pb2.GetCityStateRequest(**filters)  # type: ignore[arg-type]
            return [s.segment_id for s in stub.GetCityState(request, timeout=5).segments]

        assert ids(segment_ids=["api-ring", "api-quiet"]) == ["api-quiet", "api-ring"]
        assert ids(segment_ids=["api-ring", "api-quiet"], min_level=5) == ["api-ring"]
        assert ids(segment_ids=["api-ring", "api-quiet"], road_classes=["local"]) == ["api-quiet"]
