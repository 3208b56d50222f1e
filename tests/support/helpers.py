"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from roadsense.cloud.api.measure import ImageMeasurer
from roadsense.cloud.api.rpc import CityServicer, add_city_service
from roadsense.cloud.app import CloudService, Role
from roadsense.cloud.city.segments import SegmentConfig
from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.city.watch import ChangeFeed
from roadsense.cloud.config import CloudConfig
from roadsense.cloud.fleet.rpc import FleetServicer
from roadsense.cloud.store.interface import Store
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import connect_async, create_client
from roadsense.core.publisher import MemoryPublisher
from roadsense.edge.config import OutboxConfig
from roadsense.edge.outbox import Outbox
from roadsense.proto.topics import command_topic, reply_topic, status_topic
from roadsense.proto.v1 import fleet_pb2_grpc, telemetry_pb2


def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Poll ``condition`` until it holds or the timeout passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def health_status(address: str) -> int:
    """The overall gRPC health status a server at ``address`` reports (plaintext)."""
    with grpc.insecure_channel(address) as channel:
        status: int = (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(), timeout=5)
            .status
        )
    return status


def roadsense_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``roadsense ARGS`` in a fresh interpreter (``env`` added to ours); never raises."""
    return subprocess.run(
        [sys.executable, "-m", "roadsense.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env} if env else None,
    )


def stop_process(process: subprocess.Popen[str]) -> str:
    """SIGTERM ``process``, wait for it, check it exited cleanly; its output."""
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    return output


@contextlib.contextmanager
def running_cloud(config: CloudConfig, role: Role = "all") -> Iterator[CloudService]:
    """A started cloud service (of ``role``) with its ingest connected; stopped on exit."""
    service = CloudService(config, role=role)
    service.start()
    try:
        if role in ("ingest", "all"):
            assert service.ingest.wait_connected(10.0), "cloud ingest did not connect"
        if service.changes is not None:
            assert service.changes.wait_listening(10.0), "change listener did not start"
        yield service
    finally:
        service.stop()


@contextlib.contextmanager
def api_channel(
    store: Store,
    *,
    city: Iterable[SegmentConfig] = (),
    fleet_devices: frozenset[str] = frozenset(),
    tracker: CityTracker | None = None,
    feed: ChangeFeed | None = None,
    measurer: ImageMeasurer | None = None,
) -> Iterator[grpc.Channel]:
    """A channel to CityService and FleetService on a real gRPC server on 127.0.0.1 port 0,
    over ``store`` (no broker, no tokens, no enrollment, no forecaster)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_city_service(
        CityServicer(
            tracker or CityTracker(120_000),
            ChangeFeed() if feed is None else feed,
            store,
            city={s.id: s for s in city},
            history_interval_ms=60_000,
            max_future_ms=30_000,
            measurer=measurer,
        ),
        server,
    )
    fleet_pb2_grpc.add_FleetServiceServicer_to_server(
        FleetServicer(store, None, fleet_devices), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        server.stop(0)


def outbox_of(tmp_path: Path, reports: int) -> Outbox:
    """An outbox in ``tmp_path`` holding ``reports`` reports whose payload is their seq."""
    outbox = Outbox(OutboxConfig(path=tmp_path / "o.sqlite"))
    for _ in range(reports):
        outbox.append("t", lambda seq: seq.to_bytes(4, "big"))
    return outbox


def published_seqs(publisher: MemoryPublisher) -> list[int]:
    """Sequence numbers of what an outbox from ``outbox_of`` published, in order."""
    return [int.from_bytes(m.payload, "big") for m in publisher.messages]


class Operator:
    """Sends commands to a device and collects its replies and status, over MQTT."""

    def __init__(self, mqtt: MqttConfig, device: str) -> None:
        self.device = device
        self.replies: list[telemetry_pb2.CommandReply] = []
        self.statuses: list[telemetry_pb2.DeviceStatus] = []
        self._lock = threading.Lock()
        self._client = create_client(mqtt, f"operator-{device}")
        self._client.on_connect = lambda c, u, f, r, p: c.subscribe(
            [(reply_topic(device, "+"), 1), (status_topic(device), 1)]
        )
        self._client.on_message = self._on_message
        connect_async(self._client, mqtt)
        assert wait_until(self._client.is_connected)

    def _on_message(self, client: object, userdata: object, message: object) -> None:
        topic, payload = message.topic, message.payload  # type: ignore[attr-defined]
        with self._lock:
            if topic == status_topic(self.device):
                self.statuses.append(telemetry_pb2.DeviceStatus.FromString(payload))
            else:
                self.replies.append(telemetry_pb2.CommandReply.FromString(payload))

    def wait_online(self, since_ms: int, timeout_s: float = 30.0) -> telemetry_pb2.DeviceStatus:
        """The device's first ONLINE status published at or after ``since_ms``."""

        def find() -> telemetry_pb2.DeviceStatus | None:
            with self._lock:
                return next(
                    (
                        s
                        for s in self.statuses
                        if s.state == telemetry_pb2.DeviceStatus.ONLINE and s.time_ms >= since_ms
                    ),
                    None,
                )

        assert wait_until(lambda: find() is not None, timeout_s), f"{self.device} not online"
        status = find()
        assert status is not None
        return status

    def send(
        self, name: str, payload: bytes, timeout_s: float = 20.0
    ) -> telemetry_pb2.CommandReply:
        """Publish a command and wait for the next reply."""
        count = len(self.replies)
        self.publish(name, payload)
        assert wait_until(lambda: len(self.replies) > count, timeout_s), "no reply"
        return self.replies[count]

    def publish(self, name: str, payload: bytes) -> None:
        """Publish a command (QoS 1) without waiting for a reply."""
        self._client.publish(command_topic(self.device, name), payload, qos=1).wait_for_publish(5)

    def reply_to(self, request_id: str, timeout_s: float = 20.0) -> telemetry_pb2.CommandReply:
        """The reply to ``request_id``, waiting for it."""

        def find() -> telemetry_pb2.CommandReply | None:
            with self._lock:
                return next((r for r in self.replies if r.request_id == request_id), None)

        assert wait_until(lambda: find() is not None, timeout_s), f"no reply to {request_id}"
        reply = find()
        assert reply is not None
        return reply

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
