"""`roadsense bench ingest --workers 1,2,4`: ingest worker processes on one shared subscription.

For each worker count, on a fresh store (SQLite file or a database of one throwaway
PostgreSQL cluster, durable defaults) and the bench's own Mosquitto:

- ``ingest_msgs_per_s``: N `roadsense cloud serve --role ingest` processes drain
  ``messages`` reports queued for their sessions (the broker is paused while they start, so
  they begin together), from the first stored report to the last; ``ratio``: against the
  bare counting subscriber measured in the same run (``raw_subscriber_msgs_per_s``).
- ``cpu_us_per_msg``: the workers' CPU over the drain per report stored, all workers
  together (what one report costs, whatever the number of workers); ``cpu_us_per_msg_by_worker``
  each worker's CPU per report it stored; ``postgres_cpu_us_per_msg`` the server's.
- ``p50/p99_capture_to_queryable_ms``: at a fixed publish rate, from a report's capture
  time (stamped when published) to the moment a reader polling the store every
  ``POLL_S`` sees it (so it includes up to one poll interval).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadsense.bench.cloud_processes import CityProcesses, CloudProcess
from roadsense.bench.ingest import _publish, _run_publisher, raw_subscriber_rate
from roadsense.core.timeutil import now_ms
from roadsense.harness.broker import RunningBroker, start_mosquitto
from roadsense.harness.postgres import BENCH_SETTINGS, RunningPostgres, start_postgres

POLL_S = 0.02
"""How often the latency reader polls the store."""
TIMEOUT_S = 300.0


@dataclass
class _Reader:
    """Reads newly visible reports, also those that commit after a higher id did (several
    writers share one id sequence, so ids become visible out of order)."""

    url: str | None
    path: Path | None
    highest: int = 0
    holes: set[int] = field(default_factory=set)

    def count(self) -> int:
        ((count,),) = self._rows("SELECT COUNT(*) FROM reports", [])
        return int(count)

    def new_captures(self) -> list[int]:
        """Capture times of the reports that became visible since the last call."""
        if self.url is not None:
            rows = self._rows(
                "SELECT id, capture_time_ms FROM reports WHERE id > %s OR id = ANY(%s)",
                [self.highest, sorted(self.holes)],
            )
        else:  # one writer at a time on a SQLite file: ids commit in order
            rows = self._rows(
                "SELECT id, capture_time_ms FROM reports WHERE id > ?", [self.highest]
            )
        ids = {int(i) for i, _ in rows}
        top = max([self.highest, *ids])  # a poll may return only late holes below the highest
        self.holes = (self.holes - ids) | (set(range(self.highest + 1, top + 1)) - ids)
        self.highest = top
        return [int(c) for _, c in rows]

    def _rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        if self.url is not None:
            import psycopg

            with psycopg.connect(self.url) as conn:
                return conn.execute(sql, params).fetchall()
        import sqlite3

        assert self.path is not None
        with sqlite3.connect(self.path, timeout=30) as db:
            return [tuple(r) for r in db.execute(sql, params)]


def _wait_count(reader: _Reader, expected: int, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while reader.count() < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {reader.count()} of {expected} stored in {TIMEOUT_S} s")
        time.sleep(0.05)


@dataclass(frozen=True)
class _Run:
    """What every configuration of one bench run shares."""

    broker: RunningBroker
    cluster: RunningPostgres | None
    workdir: Path
    devices: int
    messages: int
    rate: float
    seconds: float


def _configuration(run: _Run, workers: int) -> dict[str, Any]:
    broker, cluster, devices, messages = run.broker, run.cluster, run.devices, run.messages
    folder = run.workdir / f"workers{workers}"
    folder.mkdir()
    url = cluster.create_database() if cluster else None
    store = url or str(folder / "city.sqlite")
    city = CityProcesses(folder, broker.port, store, f"bench-w{workers}", batch_size=1000)
    processes = [CloudProcess(city, f"w{i}", "ingest") for i in range(workers)]
    reader = _Reader(url, None if url else folder / "city.sqlite")
    try:
        for process in processes:  # once, to leave their sessions subscribed
            process.start()
        for process in processes:
            process.wait_ready()
        for process in processes:
            process.stop()
        _run_publisher(broker.port, devices, messages, 0.0, f"w{workers}")
        broker.pause()  # start every worker before any of them drains
        try:
            for process in processes:
                process.start()
            for process in processes:
                process.wait_ready(subscribed=False)
        finally:
            broker.resume()
        while reader.count() == 0:
            time.sleep(0.002)
        started = time.perf_counter()
        cpu = [p.cpu_seconds() for p in processes]
        server_cpu = cluster.cpu_seconds() if cluster else 0.0
        _wait_count(reader, messages, f"{workers} workers")
        elapsed = time.perf_counter() - started
        cpu = [p.cpu_seconds() - c for p, c in zip(processes, cpu, strict=True)]
        server_cpu = (cluster.cpu_seconds() if cluster else 0.0) - server_cpu
        accepted = _accepted_by_worker(processes, messages)
        reader.new_captures()  # what is stored so far is not part of the latency run
        lags = _latency(run, reader, workers, stored=messages)
    finally:
        for process in processes:
            process.stop()
    millis = sorted(lags)
    return {
        "workers": workers,
        "ingest_msgs_per_s": round(messages / elapsed, 1),
        "stored_by_worker": accepted,
        "cpu_us_per_msg": round(sum(cpu) / messages * 1e6, 1),
        "cpu_us_per_msg_by_worker": [
            round(c / n * 1e6, 1) if n else None for c, n in zip(cpu, accepted, strict=True)
        ],
        "postgres_cpu_us_per_msg": round(server_cpu / messages * 1e6, 1) if cluster else None,
        "latency_reports": len(millis),
        "p50_capture_to_queryable_ms": round(float(statistics.median(millis)), 1)
        if millis
        else None,
        "p99_capture_to_queryable_ms": (
            round(float(millis[min(len(millis) - 1, int(len(millis) * 0.99))]), 1)
            if millis
            else None
        ),
    }


def _accepted_by_worker(processes: list[CloudProcess], messages: int) -> list[int]:
    """Reports each worker stored (a worker counts a batch just after committing it)."""
    deadline = time.monotonic() + 10
    while True:
        accepted = [int(p.metric("roadsense_cloud_ingest_accepted_total") or 0) for p in processes]
        if sum(accepted) >= messages or time.monotonic() > deadline:
            return accepted
        time.sleep(0.05)


def _latency(run: _Run, reader: _Reader, workers: int, *, stored: int) -> list[float]:
    """Capture-to-visible lags (ms) of reports published at the run's rate for its seconds."""
    rate, seconds = run.rate, run.seconds
    expected = stored + int(rate * seconds)
    context = multiprocessing.get_context("spawn")
    publisher = context.Process(
        target=_publish,
        args=(run.broker.port, run.devices, int(rate * seconds), rate, f"lat{workers}"),
    )
    publisher.start()
    lags: list[float] = []
    deadline = time.monotonic() + seconds + 60
    seen = stored
    while seen < expected and time.monotonic() < deadline:
        captures = reader.new_captures()
        visible = now_ms()
        lags += [visible - c for c in captures]
        seen += len(captures)
        time.sleep(POLL_S)
    publisher.join(60)
    return lags


def run_worker_bench(
    *,
    workers: list[int],
    store: str = "sqlite",
    devices: int = 1000,
    messages: int = 20_000,
    rate: float = 2000.0,
    seconds: float = 10.0,
) -> dict[str, Any]:
    """Every worker count on fresh stores, against one bare-subscriber baseline."""
    with tempfile.TemporaryDirectory(prefix="roadsense-bench-workers-") as tmp:
        workdir = Path(tmp)
        broker = start_mosquitto(workdir / "broker")
        cluster = None
        try:
            if store == "postgresql":
                cluster = start_postgres(BENCH_SETTINGS)
            raw = raw_subscriber_rate(broker.port, devices, messages)
            run = _Run(broker, cluster, workdir, devices, messages, rate, seconds)
            configurations = [_configuration(run, n) for n in workers]
        finally:
            if cluster is not None:
                cluster.remove()
            broker.stop()
    for figures in configurations:
        figures["ratio"] = round(figures["ingest_msgs_per_s"] / raw, 3) if raw else None
    return {
        "store": store,
        "devices": devices,
        "messages": messages,
        "cpu_cores": os.cpu_count(),
        "raw_subscriber_msgs_per_s": round(raw, 1),
        "fixed_rate_msgs_per_s": rate,
        "configurations": configurations,
    }
