"""Roles of one cloud process: ingest workers, API replicas that follow them, one forecaster."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from roadsense.cloud.app import CloudService, Role
from roadsense.cloud.city.changes import CHANNEL, change_payload, changed_segments
from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.config import CloudConfig, ForecastConfig, StoreConfig
from roadsense.cloud.domain import Reading, SegmentForecast, SegmentSnapshot
from roadsense.cloud.forecast.job import ForecastJob
from roadsense.cloud.ingest.decode import decode_message
from roadsense.cloud.leader import FORECAST_LOCK_KEY, FileLeaderLock, PostgresLeaderLock
from roadsense.cloud.store.open import open_store
from roadsense.core.errors import ConfigError, RoadSenseError
from roadsense.core.paho_client import MqttPublisher
from roadsense.core.timeutil import now_ms
from roadsense.harness.postgres import RunningPostgres
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

from ..support.factories import report
from ..support.helpers import health_status, running_cloud, wait_until
from ..support.stores import sqlite_target

pytestmark = pytest.mark.integration


def _on(config: CloudConfig, store: StoreConfig, name: str) -> CloudConfig:
    """The configuration of one more process of the same city (its own client id)."""
    ingest = config.ingest.model_copy(update={"client_id": f"{config.ingest.client_id}-{name}"})
    return config.model_copy(
        update={"store": store, "ingest": ingest, "forecast": ForecastConfig(enabled=False)}
    )


def _send(config: CloudConfig, device: str, seqs: range, segment: str) -> None:
    publisher = MqttPublisher(config.mqtt, client_id=f"{device}-pub")
    publisher.start()
    assert publisher.wait_connected(10.0)
    acked: list[int] = []
    for seq in seqs:
        message = report(device=device, seq=seq, segment=segment).SerializeToString()
        publisher.publish(
            f"roadsense/v1/{device}/cam1/congestion", message, on_ack=lambda: acked.append(1)
        )
    assert wait_until(lambda: len(acked) == len(seqs))
    publisher.stop()


def _watch(address: str, seen: list[city_pb2.CityStateUpdate], ready: threading.Event) -> None:
    with grpc.insecure_channel(address) as channel:
        stream = city_pb2_grpc.CityServiceStub(channel).WatchCityState(
            city_pb2.WatchCityStateRequest(), timeout=30
        )
        ready.set()
        for change in stream:
            if change.HasField("segment"):  # the first update is the snapshot
                seen.append(change)
            if any(c.segment.reports >= 3 for c in seen):
                stream.cancel()
                return


def _state(address: str) -> city_pb2.CityState:
    with grpc.insecure_channel(address) as channel:
        state: city_pb2.CityState = city_pb2_grpc.CityServiceStub(channel).GetCityState(
            city_pb2.GetCityStateRequest(), timeout=5
        )
    return state


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    """One store two processes share: a SQLite file on one box, or a PostgreSQL database."""
    if request.param == "sqlite":
        return StoreConfig(path=tmp_path / "shared.sqlite")
    cluster: RunningPostgres = request.getfixturevalue("postgres")
    return StoreConfig(url=cluster.create_database())


def test_an_api_replica_follows_what_an_ingest_worker_stores(
    cloud_config: CloudConfig, shared_store: StoreConfig
) -> None:
    with (
        running_cloud(_on(cloud_config, shared_store, "api"), role="api") as api,
        running_cloud(_on(cloud_config, shared_store, "ingest"), role="ingest") as worker,
    ):
        before = _state(api.address)  # cached at this version; must not outlive the change
        assert [s.segment_id for s in before.segments] == []
        seen: list[city_pb2.CityStateUpdate] = []
        ready = threading.Event()
        watcher = threading.Thread(target=_watch, args=(api.address, seen, ready))
        watcher.start()
        assert ready.wait(10)
        assert wait_until(lambda: len(api.feed) == 1)
        _send(cloud_config, "role-dev", range(1, 4), "role-seg")
        watcher.join(30)
        assert not watcher.is_alive()
        assert wait_until(lambda: worker.ingest.stats().accepted == 3)
        assert {c.segment.segment_id for c in seen} == {"role-seg"}
        assert seen[-1].segment.reports == 3
        after = _state(api.address)
        assert [(s.segment_id, s.reports) for s in after.segments] == [("role-seg", 3)]
        assert after.devices_online == 1


def test_postgres_notifies_only_committed_batches(postgres: RunningPostgres) -> None:
    url = postgres.create_database()
    store = open_store(StoreConfig(url=url))
    topic = "roadsense/v1/notify-dev/cam1/congestion"

    def reading(seq: int) -> Reading:
        message = report(device="notify-dev", seq=seq, segment="n-seg").SerializeToString()
        record = decode_message(topic, message, now_ms(), 30_000)
        assert isinstance(record, Reading)
        return record

    def refuse(readings: list[Reading]) -> list[SegmentSnapshot]:
        raise RuntimeError("segment update failed")

    try:
        with psycopg.connect(url, autocommit=True) as listener:
            listener.execute(f"LISTEN {CHANNEL}")
            with pytest.raises(RuntimeError):
                store.write_batch([reading(1)], refuse)
            assert list(listener.notifies(timeout=0.5)) == []
            store.write_batch([reading(2)], CityTracker(60_000).apply)
            (note,) = list(listener.notifies(timeout=2, stop_after=1))
        assert changed_segments(note.payload) == {"n-seg"}
        assert store.report_keys() == [("notify-dev", 2)]
    finally:
        store.close()


def test_a_change_naming_too_many_segments_asks_for_all() -> None:
    assert changed_segments(change_payload(["b", "a", "a"])) == {"a", "b"}
    assert changed_segments(change_payload(f"segment-{i:05d}" for i in range(2000))) is None
    assert changed_segments("not json") is None


def _holder_pid(url: str) -> int | None:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",
            [FORECAST_LOCK_KEY],
        ).fetchall()
    return int(rows[0][0]) if rows else None


def test_one_process_holds_the_forecast_lock_and_another_takes_it_over(
    postgres: RunningPostgres,
) -> None:
    url = postgres.create_database()
    first, second = PostgresLeaderLock(url), PostgresLeaderLock(url)
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        assert first.try_acquire()  # still held: it checks its session, takes nothing twice
        assert _holder_pid(url) is not None
        first.release()
        assert second.try_acquire()
        assert not first.try_acquire()
    finally:
        first.release()
        second.release()
    assert _holder_pid(url) is None


def test_a_leader_whose_session_is_killed_knows_it_lost_the_lock(
    postgres: RunningPostgres,
) -> None:
    url = postgres.create_database()
    leader, other = PostgresLeaderLock(url), PostgresLeaderLock(url)
    try:
        assert leader.try_acquire()
        pid = _holder_pid(url)
        with psycopg.connect(url) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert wait_until(lambda: _holder_pid(url) is None, 10)
        assert other.try_acquire()
        assert not leader.try_acquire()
    finally:
        leader.release()
        other.release()


def test_file_lock_has_one_holder_on_one_box(tmp_path: Path) -> None:
    first, second = FileLeaderLock(tmp_path / "lock"), FileLeaderLock(tmp_path / "lock")
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_only_the_lock_holder_runs_the_forecast_job(postgres: RunningPostgres) -> None:
    url = postgres.create_database()
    stores = [open_store(StoreConfig(url=url)) for _ in range(3)]
    config = ForecastConfig()
    jobs = [
        ForecastJob(config, stores[0], leader=PostgresLeaderLock(url)),
        ForecastJob(config, stores[1], leader=PostgresLeaderLock(url)),
        ForecastJob(config, stores[2], lead=False),  # an API replica: follows only
    ]
    try:
        assert [job.take_lead() for job in jobs] == [True, False, False]
        jobs[0].stop()
        assert [job.take_lead() for job in jobs[1:]] == [True, False]
        assert [job.stats.leading for job in jobs] == [False, True, False]
    finally:
        for job in jobs:
            job.stop()
        for store in stores:
            store.close()


def test_a_follower_serves_the_forecasts_the_leader_stored(postgres: RunningPostgres) -> None:
    url = postgres.create_database()
    leader_store, follower_store = (open_store(StoreConfig(url=url)) for _ in range(2))
    follower = ForecastJob(ForecastConfig(), follower_store, lead=False)
    try:
        assert follower.latest() == {}
        origin = now_ms() // 900_000 * 900_000
        forecast = SegmentForecast(
            segment_id="f-seg",
            origin_ms=origin,
            interval_ms=900_000,
            values=(1.0, 2.0, 3.0, 4.0),
            observed_probability=(1.0, 1.0, 0.9, 0.8),
            model_version="leader-model",
            newest_input_ms=origin,
            missing_fraction=0.0,
            made_ms=origin + 1000,
        )
        leader_store.save_forecasts([forecast])
        follower.follow()
        assert follower.latest() == {"f-seg": forecast}
        assert follower.model() is not None  # its card, for GetForecast's horizons
    finally:
        follower.stop()
        leader_store.close()
        follower_store.close()


@pytest.mark.parametrize("role", ["ingest", "forecast"])
def test_a_process_without_the_api_serves_health_only(
    cloud_config: CloudConfig, role: Role
) -> None:
    config = cloud_config.model_copy(update={"forecast": ForecastConfig(poll_s=60)})
    with running_cloud(config, role=role) as service:
        assert health_status(service.address) == health_pb2.HealthCheckResponse.SERVING
        assert service.dashboard is None
        with (
            grpc.insecure_channel(service.address) as channel,
            pytest.raises(grpc.RpcError) as missing,
        ):
            city_pb2_grpc.CityServiceStub(channel).GetCityState(
                city_pb2.GetCityStateRequest(), timeout=5
            )
        assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_an_api_replica_has_no_ingest_and_roles_are_checked(cloud_config: CloudConfig) -> None:
    service = CloudService(cloud_config, role="api")
    try:
        with pytest.raises(RoadSenseError, match="role 'api' runs no ingest"):
            service.ingest.stats()
    finally:
        service.store.close()
    with pytest.raises(ConfigError, match="unknown role 'writer'"):
        CloudService(cloud_config, role="writer")  # type: ignore[arg-type]
    idle = cloud_config.model_copy(update={"forecast": ForecastConfig(enabled=False)})
    with pytest.raises(ConfigError, match=r"\[forecast\] enabled = false"):
        CloudService(idle, role="forecast")


def test_processes_opening_one_new_sqlite_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "city.sqlite"
    code = (
        f"from roadsense.cloud.store.sqlite import SqliteStore; SqliteStore({str(path)!r}).close()"
    )
    opening = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    failed = [stderr for p in opening if (stderr := p.communicate(timeout=60)[1]) and p.returncode]
    assert failed == []
    migrations = sqlite_target(tmp_path).rows(
        "SELECT COUNT(*), COUNT(DISTINCT name) FROM _migrations"
    )
    (count, distinct) = migrations[0]
    assert count == distinct > 0
