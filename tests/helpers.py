"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from roadsense.cloud.app import CloudService, Role
from roadsense.cloud.city import SegmentConfig
from roadsense.cloud.config import CloudConfig
from roadsense.cloud.feed import ChangeFeed
from roadsense.cloud.fleet import FleetServicer
from roadsense.cloud.service import CityServicer, add_city_service
from roadsense.cloud.state import CityTracker
from roadsense.cloud.store import Store
from roadsense.core.publisher import MemoryPublisher
from roadsense.edge.config import OutboxConfig
from roadsense.edge.outbox import Outbox
from roadsense.proto.v1 import city_pb2_grpc


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
        ),
        server,
    )
    city_pb2_grpc.add_FleetServiceServicer_to_server(
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
