"""Bearer tokens and roles on a real gRPC server: every RPC for every kind of caller."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from roadsense.cloud.api.auth import AuthConfig, TokenConfig, hash_token
from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig
from roadsense.proto.v1 import city_pb2, city_pb2_grpc, fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration

TOKENS = {"reader": "r-token-1234567890", "feed": "f-token-1234567890", "admin": "a-token-123456"}
OK = grpc.StatusCode.OK
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED

Metadata = tuple[tuple[str, str], ...]
Call = Callable[[grpc.Channel, Metadata], object]


def _get_state(channel: grpc.Channel, metadata: Metadata) -> object:
    stub = city_pb2_grpc.CityServiceStub(channel)
    return stub.GetCityState(city_pb2.GetCityStateRequest(), timeout=5, metadata=metadata)


def _get_state_deflated(channel: grpc.Channel, metadata: Metadata) -> object:
    stub = city_pb2_grpc.CityServiceStub(channel)
    request = city_pb2.GetCityStateRequest()
    return stub.GetCityStateDeflated(request, timeout=5, metadata=metadata)


def _watch(channel: grpc.Channel, metadata: Metadata) -> object:
    stub = city_pb2_grpc.CityServiceStub(channel)
    stream = stub.WatchCityState(city_pb2.WatchCityStateRequest(), timeout=5, metadata=metadata)
    first = next(iter(stream))
    stream.cancel()
    return first


def _list_devices(channel: grpc.Channel, metadata: Metadata) -> object:
    stub = fleet_pb2_grpc.FleetServiceStub(channel)
    return stub.ListDevices(fleet_pb2.ListDevicesRequest(), timeout=5, metadata=metadata)


def _observations(channel: grpc.Channel, metadata: Metadata) -> object:
    stub = city_pb2_grpc.CityServiceStub(channel)
    return stub.IngestObservations(
        city_pb2.IngestObservationsRequest(), timeout=5, metadata=metadata
    )


def _weather(channel: grpc.Channel, metadata: Metadata) -> object:
    stub = city_pb2_grpc.CityServiceStub(channel)
    return stub.IngestWeather(city_pb2.IngestWeatherRequest(), timeout=5, metadata=metadata)


def _list_segments(channel: grpc.Channel, metadata: Metadata) -> object:
    stub = city_pb2_grpc.CityServiceStub(channel)
    return stub.ListSegments(city_pb2.ListSegmentsRequest(), timeout=5, metadata=metadata)


RPCS: dict[str, tuple[Call, set[str]]] = {
    "GetCityState": (_get_state, {"reader", "feed", "admin"}),
    "GetCityStateDeflated": (_get_state_deflated, {"reader", "feed", "admin"}),
    "WatchCityState": (_watch, {"reader", "feed", "admin"}),
    "ListDevices": (_list_devices, {"admin"}),
    "ListSegments": (_list_segments, {"reader", "feed", "admin"}),
    "IngestObservations": (_observations, {"feed", "admin"}),
    "IngestWeather": (_weather, {"feed", "admin"}),
}
CALLERS: dict[str, Metadata] = {
    "none": (),
    "wrong": (("authorization", "Bearer not-a-token"),),
    "malformed": (("authorization", "Basic dXNlcjpwYXNz"),),
    **{role: (("authorization", f"Bearer {token}"),) for role, token in TOKENS.items()},
}


@pytest.fixture
def secured(cloud_config: CloudConfig) -> Iterator[CloudService]:
    auth = AuthConfig(
        tokens=[
            TokenConfig(name=f"{role}-client", role=role, sha256=hash_token(token))  # type: ignore[arg-type]
            for role, token in TOKENS.items()
        ]
    )
    grpc_config = cloud_config.grpc.model_copy(update={"auth": auth})
    service = CloudService(cloud_config.model_copy(update={"grpc": grpc_config}))
    service.start()
    yield service
    service.stop()


def _code(call: Call, channel: grpc.Channel, metadata: Metadata) -> grpc.StatusCode:
    try:
        call(channel, metadata)
    except grpc.RpcError as err:
        return err.code()
    return OK


@pytest.mark.parametrize("rpc", sorted(RPCS))
def test_auth_matrix(secured: CloudService, rpc: str, caplog: pytest.LogCaptureFixture) -> None:
    call, allowed = RPCS[rpc]
    with grpc.insecure_channel(secured.address) as channel:
        outcome = {caller: _code(call, channel, md) for caller, md in CALLERS.items()}
    expected = {
        "none": UNAUTH,
        "wrong": UNAUTH,
        "malformed": UNAUTH,
        **{role: OK if role in allowed else DENIED for role in TOKENS},
    }
    assert outcome == expected
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.DEBUG)
    assert not any(token in logged for token in TOKENS.values()), "a token reached the logs"


def test_health_and_reflection_stay_open(secured: CloudService) -> None:
    with grpc.insecure_channel(secured.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_error_messages_say_what_is_wrong(secured: CloudService) -> None:
    with grpc.insecure_channel(secured.address) as channel:
        with pytest.raises(grpc.RpcError) as missing:
            _list_devices(channel, ())
        with pytest.raises(grpc.RpcError) as denied:
            _list_devices(channel, CALLERS["reader"])
    assert missing.value.details() == "missing 'authorization: Bearer' token"
    assert denied.value.details() == (
        "role 'reader' may not call /roadsense.v1.FleetService/ListDevices"
    )
