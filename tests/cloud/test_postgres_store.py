"""The cloud on a PostgreSQL store: serve, check, concurrent writers and clear failures."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.config import CloudConfig, StoreConfig
from roadsense.cloud.domain import Reading
from roadsense.cloud.ingest.decode import decode_message
from roadsense.cloud.ingest.subscriber import IngestStats
from roadsense.cloud.store.open import open_store
from roadsense.cloud.store.postgres import arrays
from roadsense.core.paho_client import MqttPublisher
from roadsense.core.timeutil import now_ms
from roadsense.harness.postgres import RunningPostgres, start_postgres
from roadsense.proto.v1 import city_pb2, city_pb2_grpc, telemetry_pb2

from ..support.factories import report
from ..support.helpers import health_status, roadsense_cli, running_cloud, wait_until
from ..support.stores import StoreTarget, postgres_target

pytestmark = pytest.mark.integration
UNREACHABLE = "postgresql://roadsense:s3cret@127.0.0.1:1/city"
"""Nothing listens on port 1; the password must never be shown."""


def _decoded(message: telemetry_pb2.CongestionReport) -> Reading:
    topic = f"roadsense/v1/{message.device_id}/cam1/congestion"
    record = decode_message(topic, message.SerializeToString(), now_ms(), 30_000)
    assert isinstance(record, Reading)
    return record


def _readings(device: str, seqs: range) -> list[Reading]:
    return [_decoded(report(device=device, seq=seq, segment=f"seg-{seq % 3}")) for seq in seqs]


def _settled(stats: IngestStats) -> int:
    return stats.accepted + stats.duplicates + stats.rejected


def test_cloud_ingests_into_postgres_and_restarts_from_it(
    cloud_config: CloudConfig, postgres: RunningPostgres
) -> None:
    target = postgres_target(postgres.create_database())
    config = cloud_config.model_copy(update={"store": target.config})
    with running_cloud(config) as cloud:
        publisher = MqttPublisher(config.mqtt, client_id="pg-dev")
        publisher.start()
        assert publisher.wait_connected(10.0)
        topic = "roadsense/v1/pg-dev/cam1/congestion"
        for seq in (1, 2, 3, 2):
            publisher.publish(topic, report(device="pg-dev", seq=seq).SerializeToString())
        publisher.publish(topic, b"\x07garbage")
        # Wait for these five, not any five: retained statuses of earlier tests on the
        # shared broker count as received too.
        assert wait_until(lambda: _settled(cloud.ingest.stats()) >= 5)
        publisher.stop()
        stats = cloud.ingest.stats()
        assert (stats.accepted, stats.duplicates, stats.rejected) == (3, 1, 1)
    assert target.rows("SELECT device_id, seq, segment_id FROM reports ORDER BY id") == [
        ("pg-dev", 1, "seg-1"),
        ("pg-dev", 2, "seg-1"),
        ("pg-dev", 3, "seg-1"),
    ]
    assert target.rows("SELECT topic, code, repeats FROM dead_letters") == [
        (topic, "bad_protobuf", 1)
    ]
    # A new process on the same database starts with the city it left.
    with running_cloud(config) as again, grpc.insecure_channel(again.address) as channel:
        state = city_pb2_grpc.CityServiceStub(channel).GetCityState(
            city_pb2.GetCityStateRequest(), timeout=5
        )
        assert [(s.segment_id, s.reports) for s in state.segments] == [("seg-1", 3)]


def test_writers_racing_on_one_database_store_each_report_once(
    postgres: RunningPostgres,
) -> None:
    config = StoreConfig(url=postgres.create_database())
    stores = [open_store(config) for _ in range(3)]
    # Every writer gets the same 200 reports, in batches of 20: each is stored once in all.
    batches = [_readings("race", range(start, start + 20)) for start in range(1, 201, 20)]
    accepted: list[int] = []
    lock = threading.Lock()

    def write(store_index: int) -> None:
        tracker = CityTracker(60_000)
        for batch in batches if store_index % 2 else reversed(batches):
            result = stores[store_index].write_batch(batch, tracker.apply)
            with lock:
                accepted.append(len(result.accepted))

    writers = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert sum(accepted) == 200
    assert sorted(stores[0].report_keys()) == [("race", seq) for seq in range(1, 201)]
    history = postgres_target(config.url or "").rows(
        "SELECT segment_id, SUM(reports) FROM segment_history GROUP BY segment_id ORDER BY 1"
    )
    assert [(s, int(n)) for s, n in history] == [("seg-0", 66), ("seg-1", 67), ("seg-2", 67)]
    for store in stores:
        store.close()


def _camera_readings(count: int, devices: int = 2) -> list[Reading]:
    """Reports of ``devices`` cameras (one per device) on one segment, taking turns a second
    apart: the first says free, the others jammed."""
    base = now_ms() - (count + 1) * 1000
    return [
        _decoded(
            report(
                device=f"fuse-{i % devices}",
                seq=i + 1,
                segment="fuse-seg",
                capture_time_ms=base + i * 1000,
                probabilities=[0.9, 0.1, 0, 0, 0] if i % devices == 0 else [0, 0, 0, 0.2, 0.8],
            )
        )
        for i in range(count)
    ]


def test_writers_sharing_a_store_fuse_each_segment_from_every_writers_reports(
    store_target: StoreTarget,
) -> None:
    stores = [store_target.open() for _ in range(2)]
    workers = [CityTracker(120_000), CityTracker(120_000)]
    alone = CityTracker(120_000)  # one writer that saw everything
    # Each worker gets only one camera's reports: the worst split a shared subscription makes.
    for i, reading in enumerate(_camera_readings(8)):
        stores[i % 2].write_batch([reading], workers[i % 2].apply, workers[i % 2])
        alone.apply([reading])
    (stored,) = stores[0].segments()
    (expected,) = alone.snapshot(0)
    assert stored == replace(expected, stale=False)
    assert (stored.reports, stored.camera_ids) == (8, ("fuse-0/cam1", "fuse-1/cam1"))
    for store in stores:
        store.close()


def test_a_camera_gone_stale_stays_in_the_segment_of_a_writer_that_never_saw_it(
    store_target: StoreTarget,
) -> None:
    stale_after_ms = 60_000
    first, second = _camera_readings(2)
    # The second camera reports long after the first: the first is stale by then, so the
    # stored cameras handed to the second writer leave it out.
    late = first.capture_time_ms + 2 * stale_after_ms
    second = replace(second, capture_time_ms=late, received_ms=late + 50)
    first = replace(first, received_ms=first.capture_time_ms + 50)
    stores = [store_target.open() for _ in range(2)]
    workers = [CityTracker(stale_after_ms), CityTracker(stale_after_ms)]
    alone = CityTracker(stale_after_ms)
    for index, reading in enumerate((first, second)):
        stores[index].write_batch([reading], workers[index].apply, workers[index])
        alone.apply([reading])
    (stored,) = stores[0].segments()
    (expected,) = alone.snapshot(0)
    assert stored.camera_ids == expected.camera_ids == ("fuse-0/cam1", "fuse-1/cam1")
    assert stored == replace(expected, stale=False)
    for store in stores:
        store.close()


def test_writers_fusing_one_segment_at_once_count_every_report(
    store_target: StoreTarget,
) -> None:
    readings = _camera_readings(180, devices=3)
    stores = [store_target.open() for _ in range(3)]

    def write(index: int) -> None:
        # Each writer has one camera, in time order: every report becomes current.
        tracker = CityTracker(600_000)
        own = readings[index::3]
        for start in range(0, len(own), 10):
            stores[index].write_batch(own[start : start + 10], tracker.apply, tracker)

    writers = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    (stored,) = stores[0].segments()
    assert len(stores[0].report_keys()) == 180
    # One count for the segment across the writers (each alone would count its 60).
    assert stored.reports == 180
    assert stored.camera_ids == ("fuse-0/cam1", "fuse-1/cam1", "fuse-2/cam1")
    for store in stores:
        store.close()


def test_check_and_serve_on_postgres_urls(postgres: RunningPostgres, tmp_path: Path) -> None:
    url = postgres.create_database()
    good = tmp_path / "good.toml"
    good.write_text(f'[store]\nurl = "{url}"\n[forecast]\nenabled = false\n', encoding="utf-8")
    result = roadsense_cli("cloud", "check", "--config", str(good), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    facts = json.loads(result.stdout)
    pending = [
        "0001_city_schema",
        "0002_model_registry",
        "0003_rollouts",
        "0004_measurements",
        "0005_detector_rollouts",
    ]
    assert (facts["store"], facts["migrations_pending"]) == (url, pending)
    open_store(StoreConfig(url=url)).close()
    facts = json.loads(roadsense_cli("cloud", "check", "--config", str(good), "--json").stdout)
    assert (facts["migrations_pending"], facts["reports_stored"]) == ([], 0)

    away = tmp_path / "away.toml"
    away.write_text(f'[store]\nurl = "{UNREACHABLE}"\n', encoding="utf-8")
    result = roadsense_cli("cloud", "check", "--config", str(away), "--json")
    assert result.returncode == 1
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem.startswith("PostgreSQL store postgresql://roadsense:***@127.0.0.1:1/city: ")
    served = roadsense_cli("cloud", "serve", "--config", str(away))
    assert served.returncode == 1
    assert served.stderr.startswith(
        "roadsense: error: cannot open the PostgreSQL store "
        "postgresql://roadsense:***@127.0.0.1:1/city: "
    )
    assert served.stderr.count("\n") == 1
    assert "s3cret" not in served.stderr + result.stdout

    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[store]\nurl = "mysql://city"\n', encoding="utf-8")
    for command in ("check", "serve"):
        result = roadsense_cli("cloud", command, "--config", str(wrong))
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1, result.stderr
        assert "url must be postgresql://... or sqlite:///FILE, not 'mysql://city'" in result.stderr


def test_a_sqlite_url_is_a_path_and_one_store_is_named(tmp_path: Path) -> None:
    relative = CloudConfig.model_validate({"store": {"url": "sqlite:///data/city.sqlite"}})
    assert relative.store == StoreConfig(path=Path("data/city.sqlite"))
    assert relative.resolved(tmp_path).store.path == tmp_path / "data" / "city.sqlite"
    absolute = StoreConfig(url=f"sqlite:///{tmp_path / 'abs.sqlite'}")
    assert (absolute.path, absolute.postgres_url) == (tmp_path / "abs.sqlite", None)
    open_store(absolute).close()
    assert (tmp_path / "abs.sqlite").is_file()
    with pytest.raises(ValueError, match="url or path, not both"):
        StoreConfig.model_validate({"url": "postgresql://db/city", "path": "city.sqlite"})


def test_ingest_waits_out_a_postgres_restart_and_loses_nothing(
    cloud_config: CloudConfig, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = start_postgres()  # its own: this test stops it
    try:
        config = cloud_config.model_copy(
            update={"store": StoreConfig(url=cluster.create_database(), pool_size=2, timeout_s=2)}
        )
        with running_cloud(config) as cloud:
            publisher = MqttPublisher(config.mqtt, client_id="restart-dev")
            publisher.start()
            assert publisher.wait_connected(10.0)
            topic = "roadsense/v1/restart-dev/cam1/congestion"

            def send(seqs: range) -> None:
                for seq in seqs:
                    message = report(device="restart-dev", seq=seq).SerializeToString()
                    publisher.publish(topic, message)

            send(range(1, 51))
            assert wait_until(lambda: cloud.ingest.stats().accepted == 50)
            cluster.stop()
            send(range(51, 101))
            assert wait_until(lambda: cloud.ingest.stats().write_failures >= 1)
            assert health_status(cloud.address) == health_pb2.HealthCheckResponse.NOT_SERVING
            with grpc.insecure_channel(cloud.address) as channel:
                request = city_pb2.GetSegmentRequest(segment_id="seg-1")
                with pytest.raises(grpc.RpcError) as away:
                    city_pb2_grpc.CityServiceStub(channel).GetSegment(request, timeout=10)
            assert away.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "PostgreSQL store" in str(away.value.details())
            time.sleep(1.0)  # a while away, retrying
            cluster.start()
            assert wait_until(lambda: cloud.ingest.stats().accepted == 100, timeout_s=60)
            # SERVING once the ingest writes and the change listener has reconnected.
            serving = health_pb2.HealthCheckResponse.SERVING
            assert wait_until(lambda: health_status(cloud.address) == serving, timeout_s=10)
            publisher.stop()
            assert cloud.store.report_keys() == [("restart-dev", s) for s in range(1, 101)]
            assert cloud.ingest.stats().duplicates == 0
    finally:
        cluster.remove()
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # One error for the outage (the batch it held), however many retries.
    assert len(failed) == 1
    assert failed[0].startswith("ingest: writing a batch of")
    caplog.clear()


def test_batch_columns_are_sent_as_binary_arrays_of_their_kind(postgres: RunningPostgres) -> None:
    """An int in a float8 column or a bool in an integer one is converted, None kept."""
    rows = [("a", True, 5, 1), ("b", None, 2.5, None), ("c", 0, None, 2**40)]
    kinds = ("text", "integer", "float8", "bigint")
    columns = arrays(rows, kinds)
    assert columns == [["a", "b", "c"], [1, None, 0], [5.0, 2.5, None], [1, None, 2**40]]
    assert [type(v) for v in columns[2]] == [float, float, type(None)]
    with psycopg.connect(postgres.create_database()) as conn:
        unnest = ", ".join(f"%b::{kind}[]" for kind in kinds)
        back = conn.execute(f"SELECT * FROM unnest({unnest})", columns).fetchall()
    assert back == [("a", 1, 5.0, 1), ("b", None, 2.5, None), ("c", 0, None, 2**40)]
