"""Faults of a city spread over processes: real Mosquitto, real PostgreSQL, real
`roadsense cloud serve --role ...` subprocesses, SIGKILL.

Each test prints one ``FAULT-FIGURES {json}`` line (run with ``-s`` to see them).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from roadsense.bench.cloud_processes import CityProcesses, CloudProcess
from roadsense.cloud.leader import FORECAST_LOCK_KEY
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.harness.broker import RunningBroker
from roadsense.harness.postgres import RunningPostgres, start_postgres
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

from ..support.factories import report
from ..support.helpers import wait_until

pytestmark = pytest.mark.integration
DEVICE = "fault-dev"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _figures(test: str, **figures: object) -> None:
    print("FAULT-FIGURES " + json.dumps({"test": test, **figures}))


class _Sender:
    """Publishes reports of one device, QoS 1, at a steady rate, in its own thread."""

    def __init__(self, port: int, name: str) -> None:
        self._publisher = MqttPublisher(
            MqttConfig(port=port), client_id=f"{name}-pub", max_inflight=500
        )
        self._publisher.start()
        assert self._publisher.wait_connected(10.0)
        self.acked = 0
        self._lock = threading.Lock()

    def _ack(self) -> None:
        with self._lock:
            self.acked += 1

    def send(self, seqs: range, rate_per_s: float = 0.0, segments: int = 20) -> None:
        started = time.monotonic()
        for i, seq in enumerate(seqs):
            if rate_per_s:
                delay = started + i / rate_per_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            message = report(device=DEVICE, seq=seq, segment=f"fseg-{seq % segments}")
            self._publisher.publish(
                f"roadsense/v1/{DEVICE}/cam1/congestion",
                message.SerializeToString(),
                on_ack=self._ack,
            )

    def in_background(self, seqs: range, rate_per_s: float) -> threading.Thread:
        thread = threading.Thread(target=self.send, args=(seqs, rate_per_s))
        thread.start()
        return thread

    def stop(self) -> None:
        self._publisher.stop()


def _stored(url: str) -> tuple[int, int]:
    """(rows, distinct (device, seq)) of the reports table."""
    with psycopg.connect(url) as conn:
        ((rows, distinct),) = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT (device_id, seq)) FROM reports"
        ).fetchall()
    return int(rows), int(distinct)


def _seqs(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT seq FROM reports WHERE device_id = %s ORDER BY seq", [DEVICE])
        return [int(seq) for (seq,) in rows]


def _duplicates(process: CloudProcess) -> int:
    """Redeliveries the process's ingest dropped as already stored (its metrics)."""
    return int(process.metric("roadsense_cloud_ingest_duplicates_total") or 0)


@pytest.fixture
def processes() -> Iterator[list[CloudProcess]]:
    """Processes a test starts: stopped (or killed) at the end whatever happens."""
    started: list[CloudProcess] = []
    yield started
    for process in started:
        process.stop()


def _city(tmp_path: Path, broker: RunningBroker, url: str) -> CityProcesses:
    return CityProcesses(tmp_path, broker.port, url, f"fault-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def city(mosquitto: RunningBroker, postgres: RunningPostgres, tmp_path: Path) -> CityProcesses:
    """The processes' shared settings, on a new database of the session's cluster."""
    return _city(tmp_path, mosquitto, postgres.create_database())


def _start(
    processes: list[CloudProcess], city: CityProcesses, name: str, role: str
) -> CloudProcess:
    process = CloudProcess(city, name, role)
    process.start()
    processes.append(process)
    return process


def test_a_killed_ingest_worker_loses_and_duplicates_no_report(
    mosquitto: RunningBroker, city: CityProcesses, processes: list[CloudProcess]
) -> None:
    url = city.store_url
    workers = [_start(processes, city, f"w{i}", "ingest") for i in range(3)]
    for worker in workers:
        worker.wait_ready()
    total = 3000
    sender = _Sender(mosquitto.port, "kill")
    sending = sender.in_background(range(1, total + 1), rate_per_s=600)
    assert wait_until(lambda: sender.acked >= total // 3, 60)
    workers[1].kill()  # mid-stream, batches in flight
    killed_at = _stored(url)[0]
    sending.join(120)
    assert wait_until(lambda: sender.acked == total, 60)
    # The other two go on; what the broker had routed to the dead worker's session waits.
    time.sleep(2.0)
    while_down = _stored(url)[0]
    workers[1].start()  # as systemd's Restart= would: same client id, same session
    workers[1].wait_ready()
    assert wait_until(lambda: _stored(url)[0] >= total, 60)
    time.sleep(1.0)  # any late redelivery would show now
    rows, distinct = _stored(url)
    sender.stop()
    assert _seqs(url) == list(range(1, total + 1))
    assert rows == distinct == total
    _figures(
        "killed_ingest_worker",
        sent=total,
        stored=rows,
        duplicate_rows=rows - distinct,
        stored_when_killed=killed_at,
        stored_before_restart=while_down,
        redeliveries_dropped_as_duplicates=sum(_duplicates(w) for w in workers),
    )


def test_postgres_restart_mid_ingest_loses_nothing_and_health_follows(
    mosquitto: RunningBroker, tmp_path: Path, processes: list[CloudProcess]
) -> None:
    cluster = start_postgres()  # its own: this test stops it
    try:
        url = cluster.create_database()
        city = _city(tmp_path, mosquitto, url)
        worker = _start(processes, city, "w1", "ingest")
        api = _start(processes, city, "a1", "api")
        forecaster = _start(processes, dataclasses.replace(city, forecast=True), "f1", "forecast")
        for process in (worker, api, forecaster):
            process.wait_ready()
        sender = _Sender(mosquitto.port, "restart")
        sender.send(range(1, 201))
        assert wait_until(lambda: _stored(url)[0] == 200, 30)
        cluster.stop()
        away = time.monotonic()
        sender.send(range(201, 601), rate_per_s=400)
        assert wait_until(lambda: worker.health() == NOT_SERVING, 30)
        assert wait_until(lambda: api.health() == NOT_SERVING, 30)
        assert wait_until(lambda: forecaster.health() == NOT_SERVING, 30)
        assert wait_until(lambda: sender.acked == 600, 30)  # the broker holds them
        assert wait_until(lambda: "retry in" in worker.output(), 30)  # it backs off
        # Killed while the store is away: whatever it had taken is still unacknowledged.
        worker.kill()
        time.sleep(1.0)
        cluster.start()
        back = time.monotonic()
        worker.start()
        worker.wait_ready()
        assert wait_until(lambda: _stored(url)[0] >= 600, 60)
        assert wait_until(lambda: api.health() == SERVING, 30)
        assert wait_until(lambda: forecaster.health() == SERVING, 30)
        rows, distinct = _stored(url)
        sender.stop()
        assert _seqs(url) == list(range(1, 601))
        assert rows == distinct
    finally:
        cluster.remove()
    _figures(
        "postgres_restart",
        sent=600,
        sent_while_store_away=400,
        stored=rows,
        duplicate_rows=rows - distinct,
        store_away_s=round(back - away, 2),
        health_while_away="NOT_SERVING (ingest, api and forecast)",
    )


def _answered(channel: grpc.Channel) -> int | None:
    try:
        state: city_pb2.CityState = city_pb2_grpc.CityServiceStub(channel).GetCityState(
            city_pb2.GetCityStateRequest(segment_ids=["fseg-0"]), timeout=2
        )
    except grpc.RpcError:
        return None
    return state.segments[0].reports if state.segments else 0


def test_a_killed_api_replica_leaves_another_answering(
    mosquitto: RunningBroker, city: CityProcesses, processes: list[CloudProcess]
) -> None:
    worker = _start(processes, city, "w1", "ingest")
    replicas = [_start(processes, city, f"a{i}", "api") for i in range(2)]
    for process in (worker, *replicas):
        process.wait_ready()
    sender = _Sender(mosquitto.port, "api")
    sender.send(range(1, 101), segments=1)
    # A client balancing over both replicas, as a gRPC load balancer would.
    target = "ipv4:" + ",".join(r.address for r in replicas)
    options = [("grpc.lb_policy_name", "round_robin")]
    with grpc.insecure_channel(target, options=options) as channel:
        assert wait_until(lambda: _answered(channel) == 100, 30)
        replicas[0].kill()
        killed = time.monotonic()
        results = [_answered(channel) for _ in range(50)]
        sender.send(range(101, 151), segments=1)
        assert wait_until(lambda: _answered(channel) == 150, 30)
        following_s = time.monotonic() - killed
    sender.stop()
    failed = results.count(None)
    assert failed < len(results)  # the survivor answered right after the kill
    _figures(
        "killed_api_replica",
        calls_after_kill=len(results),
        failed_calls_after_kill=failed,
        survivor_saw_new_reports_within_s=round(following_s, 2),
    )


def _lock_holder(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
            [FORECAST_LOCK_KEY],
        ).fetchall()
    return str(rows[0][0]) if rows else None


def test_a_killed_forecast_leader_is_replaced_within_the_lock_poll(
    city: CityProcesses, processes: list[CloudProcess]
) -> None:
    url = city.store_url
    lock_poll_s = 1.0
    city = dataclasses.replace(city, forecast=True, lock_poll_s=lock_poll_s)
    forecasters = [_start(processes, city, f"f{i}", "forecast") for i in range(2)]
    for process in forecasters:
        process.wait_ready()
    names = {f"roadsense-forecast-lock-{p.pid}": p for p in forecasters}
    assert wait_until(lambda: _lock_holder(url) in names, 30)
    holder = _lock_holder(url)
    assert holder is not None
    leader = names[holder]
    (other,) = [p for p in forecasters if p is not leader]
    time.sleep(lock_poll_s * 2)
    assert _lock_holder(url) == holder  # the other kept trying and did not get it
    leader.kill()
    killed = time.monotonic()
    assert wait_until(lambda: _lock_holder(url) == f"roadsense-forecast-lock-{other.pid}", 30)
    takeover_s = time.monotonic() - killed
    leader.start()  # back, as a follower
    leader.wait_ready()
    time.sleep(lock_poll_s * 2)
    assert _lock_holder(url) == f"roadsense-forecast-lock-{other.pid}"
    assert "took the PostgreSQL advisory lock" in other.output()
    _figures("killed_forecast_leader", lock_poll_s=lock_poll_s, takeover_s=round(takeover_s, 2))
