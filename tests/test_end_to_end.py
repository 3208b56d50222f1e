"""Edge agents → real Mosquitto → cloud → real gRPC server, on the real clip."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.config import CameraConfig, EdgeConfig, OutboxConfig, ReportConfig
from roadsense.edge.runner import build_agent
from roadsense.harness.broker import start_mosquitto
from roadsense.models.card import load_card
from roadsense.models.shipped import DEFAULT_CNN
from roadsense.proto.v1 import city_pb2, city_pb2_grpc, fleet_pb2, fleet_pb2_grpc

from .conftest import SAMPLE_VIDEO
from .support.factories import report
from .support.helpers import wait_until
from .support.netproxy import FlakyLink

pytestmark = pytest.mark.integration
RPC_TIMEOUT_S = 5.0


def edge_config(device: str, mqtt: MqttConfig, tmp_path: Path, segment: str) -> EdgeConfig:
    return EdgeConfig(
        device_id=device,
        mqtt=mqtt,
        reports=ReportConfig(window=2, interval_s=0.3),
        outbox=OutboxConfig(path=tmp_path / f"{device}.sqlite"),
        health_interval_s=1.0,
        cameras=[
            CameraConfig(
                id="cam1", source=str(SAMPLE_VIDEO), segment_id=segment, sample_hz=8, loop=True
            )
        ],
    )


def stored_keys(cloud: CloudService, devices: set[str]) -> list[tuple[str, int]]:
    return [key for key in cloud.store.report_keys() if key[0] in devices]


def expected_keys(agents: list[EdgeAgent]) -> set[tuple[str, int]]:
    return {
        (agent.config.device_id, seq)
        for agent in agents
        for seq in range(1, agent.stats.reports_created + 1)
    }


@pytest.fixture
def channel(cloud: CloudService) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(cloud.address) as ch:
        yield ch


def test_every_report_reaches_the_store_exactly_once(
    cloud: CloudService, channel: grpc.Channel, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    stub = city_pb2_grpc.CityServiceStub(channel)
    watch = stub.WatchCityState(
        city_pb2.WatchCityStateRequest(segment_ids=["e2e-seg-1", "e2e-seg-2"]),
        timeout=60,
    )
    updates: list[city_pb2.CityStateUpdate] = []

    def consume() -> None:
        try:
            for update in watch:
                updates.append(update)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                raise

    consumer = threading.Thread(target=consume)
    consumer.start()

    agents = [
        build_agent(edge_config(f"e2e-{i}", mqtt_config, tmp_path, f"e2e-seg-{i}")) for i in (1, 2)
    ]
    devices = {a.config.device_id for a in agents}
    for agent in agents:
        agent.start()
    try:
        assert wait_until(lambda: all(a.stats.reports_created >= 5 for a in agents))
        for agent in agents:
            agent.stop_capture()
        assert all(agent.flush(10.0) for agent in agents)
        want = expected_keys(agents)
        assert wait_until(lambda: set(stored_keys(cloud, devices)) == want)
        keys = stored_keys(cloud, devices)
        assert len(keys) == len(set(keys)) == len(want)

        state = stub.GetCityState(
            city_pb2.GetCityStateRequest(segment_ids=["e2e-seg-1", "e2e-seg-2"]),
            timeout=RPC_TIMEOUT_S,
        )
        assert [s.segment_id for s in state.segments] == ["e2e-seg-1", "e2e-seg-2"]
        for segment, agent in zip(state.segments, agents, strict=True):
            assert segment.reports == agent.stats.reports_created
            assert segment.camera_ids == [f"{agent.config.device_id}/cam1"]
            assert 0.0 <= segment.level <= 10.0
            assert not segment.stale
            assert segment.label in {"free", "light", "moderate", "heavy", "jammed"}
        assert 0.0 <= state.congestion_index <= 10.0

        assert wait_until(lambda: len(updates) >= 3)
        assert updates[0].WhichOneof("update") == "snapshot"
        changed = {u.segment.segment_id for u in updates[1:] if u.WhichOneof("update") == "segment"}
        assert changed == {"e2e-seg-1", "e2e-seg-2"}

        fleet = fleet_pb2_grpc.FleetServiceStub(channel)
        listed = fleet.ListDevices(fleet_pb2.ListDevicesRequest(), timeout=RPC_TIMEOUT_S)
        ours = {d.device_id: d for d in listed.devices if d.device_id in devices}
        assert set(ours) == devices
        shipped = load_card(DEFAULT_CNN).version
        assert all(d.online and d.model_version == shipped for d in ours.values())
    finally:
        watch.cancel()
        consumer.join(5)
        for agent in agents:
            agent.stop()
    # A clean stop publishes the retained offline status.
    assert wait_until(
        lambda: not any(d.online for d in cloud.store.devices() if d.device_id in devices)
    )
    assert cloud.ingest.stats().rejected == 0


def test_health_and_reflection(cloud: CloudService, channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "roadsense.v1.CityService", "roadsense.v1.FleetService"):
        response = health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S
        )
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {
        "roadsense.v1.CityService",
        "roadsense.v1.FleetService",
        "grpc.health.v1.Health",
    } <= services


def test_bad_messages_are_dead_lettered_and_ingest_goes_on(
    cloud: CloudService, mqtt_config: MqttConfig
) -> None:
    publisher = MqttPublisher(mqtt_config, client_id="dlq-probe")
    publisher.start()
    assert publisher.wait_connected(10.0)
    acks: list[int] = []
    publisher.publish(
        "roadsense/v1/dlq-dev/cam1/congestion", b"\x00garbage", on_ack=lambda: acks.append(1)
    )
    publisher.publish(
        "roadsense/v1/dlq-dev/cam1/congestion",
        report(device="someone-else").SerializeToString(),
        on_ack=lambda: acks.append(2),
    )
    publisher.publish(
        "roadsense/v1/dlq-dev/cam1/congestion",
        report(device="dlq-dev", seq=1, segment="dlq-seg").SerializeToString(),
        on_ack=lambda: acks.append(3),
    )
    assert wait_until(lambda: len(acks) == 3)
    assert wait_until(lambda: ("dlq-dev", 1) in cloud.store.report_keys())
    publisher.stop()
    reasons = [r for t, r in cloud.store.dead_letters() if t.startswith("roadsense/v1/dlq-dev/")]
    assert len(reasons) == 2
    assert "not a valid congestion protobuf" in reasons[0]
    assert "does not match topic device 'dlq-dev'" in reasons[1]


def test_reports_made_while_the_uplink_is_down_arrive_once(
    cloud: CloudService, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    link = FlakyLink(mqtt_config.host, mqtt_config.port)
    uplink = mqtt_config.model_copy(update={"port": link.port})
    agent = build_agent(edge_config("uplink-1", uplink, tmp_path, "uplink-seg"))
    try:
        agent.start()
        assert wait_until(lambda: agent.forwarder.acknowledged >= 3)
        link.cut()
        created_before = agent.stats.reports_created
        assert wait_until(lambda: agent.stats.reports_created >= created_before + 4)
        assert agent.outbox.pending_count() >= 3  # held durably while the link is down
        link.restore()
        assert wait_until(lambda: agent.forwarder.acknowledged >= created_before + 4, 30.0)
        agent.stop_capture()
        assert agent.flush(15.0)
        want = expected_keys([agent])
        ok = wait_until(lambda: set(stored_keys(cloud, {"uplink-1"})) == want, 30.0)
        assert ok, sorted(want - set(stored_keys(cloud, {"uplink-1"})))
        keys = stored_keys(cloud, {"uplink-1"})
        assert len(keys) == len(set(keys))
    finally:
        agent.stop()
        link.close()


def test_reports_made_while_the_broker_restarts_arrive_once(
    tmp_path: Path, cloud_config: CloudConfig
) -> None:
    """A plain persistent subscription (the default) survives a Mosquitto restart."""
    broker = start_mosquitto(tmp_path / "broker")
    mqtt = cloud_config.mqtt.model_copy(update={"port": broker.port})
    ingest = cloud_config.ingest.model_copy(update={"shared_group": ""})
    service = CloudService(cloud_config.model_copy(update={"mqtt": mqtt, "ingest": ingest}))
    service.start()
    agent = build_agent(edge_config("restart-1", mqtt, tmp_path, "restart-seg"))
    try:
        assert service.ingest.wait_connected(10.0)
        agent.start()
        assert wait_until(lambda: agent.forwarder.acknowledged >= 3)
        broker.stop()
        created_before = agent.stats.reports_created
        assert wait_until(lambda: agent.stats.reports_created >= created_before + 4)
        broker.restart()
        assert wait_until(lambda: agent.forwarder.acknowledged >= created_before + 4, 30.0)
        agent.stop_capture()
        assert agent.flush(15.0)
        want = expected_keys([agent])
        ok = wait_until(lambda: set(stored_keys(service, {"restart-1"})) == want, 30.0)
        assert ok, sorted(want - set(stored_keys(service, {"restart-1"})))
        keys = stored_keys(service, {"restart-1"})
        assert len(keys) == len(set(keys))
    finally:
        agent.stop()
        service.stop()
        broker.stop()


def test_health_says_not_serving_while_draining(cloud_config: CloudConfig) -> None:
    config = cloud_config.model_copy(
        update={"grpc": cloud_config.grpc.model_copy(update={"drain_s": 1.5})}
    )
    service = CloudService(config)
    service.start()
    with grpc.insecure_channel(service.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        assert health.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        stopper = threading.Thread(target=service.stop)
        stopper.start()
        assert wait_until(
            lambda: (
                health.Check(request, timeout=5).status
                == health_pb2.HealthCheckResponse.NOT_SERVING
            ),
            1.0,
        )
        stopper.join(10)
