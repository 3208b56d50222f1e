"""Two ingest workers on one shared subscription; watchers that do not keep up."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig, StoreConfig
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

from ..support.factories import report
from ..support.helpers import wait_until

pytestmark = pytest.mark.integration


def _publish(mqtt: MqttConfig, device: str, count: int, segments: int = 1) -> None:
    publisher = MqttPublisher(mqtt, client_id=f"{device}-pub", max_inflight=200)
    publisher.start()
    assert publisher.wait_connected(10.0)
    acked: list[int] = []
    for seq in range(1, count + 1):
        message = report(device=device, seq=seq, segment=f"{device}-s{seq % segments}")
        publisher.publish(
            f"roadsense/v1/{device}/cam1/congestion",
            message.SerializeToString(),
            on_ack=lambda: acked.append(1),
        )
    assert wait_until(lambda: len(acked) == count, 30.0)
    publisher.stop()


def test_two_workers_split_the_traffic_and_store_each_report_once(
    cloud_config: CloudConfig, tmp_path: Path
) -> None:
    workers = []
    for name in ("w1", "w2"):
        ingest = cloud_config.ingest.model_copy(
            update={"client_id": f"{cloud_config.ingest.client_id}-{name}"}
        )
        config = cloud_config.model_copy(
            update={"ingest": ingest, "store": StoreConfig(path=tmp_path / f"{name}.sqlite")}
        )
        workers.append(CloudService(config))
    for worker in workers:
        worker.start()
        assert worker.ingest.wait_connected(10.0)
    try:
        _publish(cloud_config.mqtt, "split-dev", 400)

        def stored() -> list[list[int]]:
            return [[s for d, s in w.store.report_keys() if d == "split-dev"] for w in workers]

        assert wait_until(lambda: sum(len(k) for k in stored()) == 400, 30.0)
        first, second = stored()
        assert first, "the first worker got nothing"
        assert second, "the second worker got nothing"
        assert sorted(first + second) == list(range(1, 401))
    finally:
        for worker in workers:
            worker.stop()


def test_a_stalled_watcher_does_not_hold_up_another(cloud: CloudService) -> None:
    with grpc.insecure_channel(cloud.address) as channel:
        stub = city_pb2_grpc.CityServiceStub(channel)
        stalled = stub.WatchCityState(city_pb2.WatchCityStateRequest(), timeout=60)
        next(stalled)  # take the snapshot, then read nothing more
        lively = stub.WatchCityState(city_pb2.WatchCityStateRequest(), timeout=60)
        seen: list[city_pb2.CityStateUpdate] = []

        def consume() -> None:
            try:
                for update in lively:
                    seen.append(update)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.CANCELLED:
                    raise

        thread = threading.Thread(target=consume)
        thread.start()
        _publish(cloud.config.mqtt, "watch-dev", 300, segments=5)
        assert wait_until(
            lambda: (
                {u.segment.segment_id for u in seen if u.WhichOneof("update") == "segment"}
                == {f"watch-dev-s{i}" for i in range(5)}
            ),
            30.0,
        )
        assert wait_until(
            lambda: any(
                u.segment.segment_id == "watch-dev-s0" and u.segment.reports == 60 for u in seen
            ),
            30.0,
        )
        # The stalled stream still gets the latest state of each changed segment,
        # coalesced: far fewer messages than reports.
        updates = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            update = next(stalled)
            if update.WhichOneof("update") == "segment":
                updates.append(update.segment)
            if {s.segment_id for s in updates} >= {f"watch-dev-s{i}" for i in range(5)} and any(
                s.segment_id == "watch-dev-s0" and s.reports == 60 for s in updates
            ):
                break
        assert len(updates) < 300
        stalled.cancel()
        lively.cancel()
        thread.join(5)
    # Both streams noticed their cancellation and left the feed.
    assert wait_until(lambda: len(cloud.feed) == 0, 5.0)


def test_store_is_idempotent_under_redelivery(cloud: CloudService) -> None:
    _publish(cloud.config.mqtt, "redeliver-dev", 50)
    _publish(cloud.config.mqtt, "redeliver-dev", 50)  # the same 50 again
    assert wait_until(lambda: cloud.ingest.stats().duplicates >= 50, 30.0)
    keys = [s for d, s in cloud.store.report_keys() if d == "redeliver-dev"]
    assert sorted(keys) == list(range(1, 51))
