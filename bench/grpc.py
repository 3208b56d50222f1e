"""`roadsense bench grpc`: GetCityState on a big city, and change fan-out to many watchers.

- ``get_city_state_p50_ms`` / ``p99``: sequential calls over loopback with
  ``segments`` segments (default 10,000) in the city.
- ``baseline_health_check_p50_ms``: the gRPC health check, an empty unary
  call, in the same run; ``get_city_state_ratio`` is GetCityState p50 over it.
- ``get_city_state_after_change_p50_ms`` / ``p99``: the same call right after a
  segment changed, so the answer is built anew (a busy city, where every ingest
  batch changes something); between changes callers share one encoded answer.
- ``get_city_state_rate_per_s``: ``clients`` (default 32) concurrent callers for
  ``seconds``; ``bare_unary_rate_per_s``: the same clients on a bare grpcio
  server's empty unary method in the same run; ``rate_over_bare_unary`` is the
  first over the second (``roadsense.bench.grpc_rate``);
  ``same_size_unary_rate_per_s``: that bare server answering a constant as big
  as GetCityState's (``answer_bytes``), so ``rate_over_same_size`` shows what
  the service costs beyond moving its answer, and ``same_size_over_bare_unary``
  is the most ``rate_over_bare_unary`` any server sending that answer reaches;
  ``get_city_state_deflated_rate_per_s``: the same clients calling GetCityStateDeflated
  (the same answer, deflated once per answer: ``deflated_answer_bytes``), and
  ``deflated_rate_over_bare_unary`` against the same bare rate.
- ``fanout_p99_ms``: ``watchers`` concurrent WatchCityState streams (default
  100); a segment changes and each stream's delivery is timed from the moment
  the change was published to the feed.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from roadsense.bench.grpc_rate import (
    BARE_METHOD,
    SIZED_METHOD,
    bare_unary_server,
    concurrent_rate,
    raw_unary,
)
from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig, GrpcConfig, IngestConfig, StoreConfig
from roadsense.cloud.domain import Reading
from roadsense.core.mqtt import MqttConfig
from roadsense.core.timeutil import now_ms
from roadsense.harness.broker import start_mosquitto
from roadsense.models.congestion_labels import CONGESTION_LABELS

LABELS = CONGESTION_LABELS


def _reading(segment: int, seq: int, level_class: int, age_ms: int = 0) -> Reading:
    probabilities = tuple(1.0 if i == level_class else 0.0 for i in range(5))
    captured = now_ms() - age_ms
    return Reading(
        device_id=f"bench-dev{segment:05d}",
        camera_id="cam1",
        segment_id=f"seg{segment:05d}",
        seq=seq,
        capture_time_ms=captured,
        window_start_ms=captured - 1000,
        received_ms=now_ms(),
        model_version="bench",
        labels=LABELS,
        probabilities=probabilities,
        frames_in_window=4,
        level=level_class * 2.5,
    )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def run_grpc_bench(
    *,
    segments: int = 10_000,
    calls: int = 200,
    watchers: int = 100,
    clients: int = 32,
    seconds: float = 3.0,
) -> dict[str, Any]:
    """Run every measurement on a cloud service with a private broker."""
    with tempfile.TemporaryDirectory(prefix="roadsense-bench-grpc-") as tmp:
        workdir = Path(tmp)
        broker = start_mosquitto(workdir / "broker")
        service = CloudService(
            CloudConfig(
                mqtt=MqttConfig(port=broker.port),
                ingest=IngestConfig(client_id="bench-grpc"),
                grpc=GrpcConfig(port=0, max_workers=watchers + 16, drain_s=0),
                store=StoreConfig(path=workdir / "city.sqlite"),
            )
        )
        service.start()
        try:
            # Cameras report at their own moments: capture times spread over a minute, as
            # in a live city (an answer of equal times would deflate far better).
            spread = random.Random(0)
            readings = [
                _reading(i, 1, spread.randrange(5), spread.randrange(60_000))
                for i in range(segments)
            ]
            service.store.write_batch(readings, service.tracker.apply)
            with grpc.insecure_channel(service.address) as channel:
                state_ms, health_ms = _unary_latencies(channel, calls)
                changed_ms = _latencies_after_change(service, channel, max(10, calls // 4))
                rates = _rates(channel, clients, seconds, watchers + 16)
                fanout_ms = _fanout(service, channel, watchers, segments)
        finally:
            service.stop()
            broker.stop()
    state_p50 = statistics.median(state_ms)
    health_p50 = statistics.median(health_ms)
    return {
        "segments": segments,
        "calls": calls,
        "get_city_state_p50_ms": round(state_p50, 2),
        "get_city_state_p99_ms": round(_percentile(state_ms, 0.99), 2),
        "baseline_health_check_p50_ms": round(health_p50, 3),
        "get_city_state_ratio": round(state_p50 / health_p50, 1),
        "get_city_state_after_change_p50_ms": round(statistics.median(changed_ms), 2),
        "get_city_state_after_change_p99_ms": round(_percentile(changed_ms, 0.99), 2),
        "clients": clients,
        **rates,
        "watchers": watchers,
        "fanout_samples": len(fanout_ms),
        "fanout_p50_ms": round(statistics.median(fanout_ms), 2),
        "fanout_p99_ms": round(_percentile(fanout_ms, 0.99), 2),
    }


def _unary_latencies(channel: grpc.Channel, calls: int) -> tuple[list[float], list[float]]:
    from roadsense.proto.v1 import city_pb2, city_pb2_grpc

    city = city_pb2_grpc.CityServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    state_ms: list[float] = []
    health_ms: list[float] = []
    for _ in range(calls):  # interleaved, so both see the same machine
        started = time.perf_counter()
        city.GetCityState(city_pb2.GetCityStateRequest(), timeout=30)
        state_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        health_ms.append((time.perf_counter() - started) * 1000)
    return state_ms, health_ms


def _latencies_after_change(
    service: CloudService, channel: grpc.Channel, calls: int
) -> list[float]:
    from roadsense.proto.v1 import city_pb2, city_pb2_grpc

    city = city_pb2_grpc.CityServiceStub(channel)
    elapsed_ms: list[float] = []
    for call in range(calls):
        service.tracker.apply([_reading(1, call + 2, call % 5)])
        started = time.perf_counter()
        city.GetCityState(city_pb2.GetCityStateRequest(), timeout=30)
        elapsed_ms.append((time.perf_counter() - started) * 1000)
    return elapsed_ms


def _rates(
    channel: grpc.Channel, clients: int, seconds: float, max_workers: int
) -> dict[str, float]:
    from roadsense.proto.v1 import city_pb2

    get_state = raw_unary(
        channel,
        "/roadsense.v1.CityService/GetCityState",
        city_pb2.GetCityStateRequest().SerializeToString(),
    )
    get_deflated = raw_unary(
        channel,
        "/roadsense.v1.CityService/GetCityStateDeflated",
        city_pb2.GetCityStateRequest().SerializeToString(),
    )
    size = len(get_state())
    deflated_size = len(get_deflated())
    rates: dict[str, list[float]] = {"state": [], "deflated": [], "bare": [], "sized": []}
    with (
        bare_unary_server(max_workers, size) as address,
        grpc.insecure_channel(address) as bare,
    ):
        calls = {
            "state": get_state,
            "deflated": get_deflated,
            "bare": raw_unary(bare, BARE_METHOD, b""),
            "sized": raw_unary(bare, SIZED_METHOD, b""),
        }
        for _ in range(2):  # alternated, so all see the same machine
            for name, call in calls.items():
                rates[name].append(concurrent_rate(call, clients, seconds / 2))
    state, deflated, bare_rate, sized = (
        statistics.mean(rates[n]) for n in ("state", "deflated", "bare", "sized")
    )
    return {
        "answer_bytes": size,
        "get_city_state_rate_per_s": round(state),
        "bare_unary_rate_per_s": round(bare_rate),
        "rate_over_bare_unary": round(state / bare_rate, 2),
        "same_size_unary_rate_per_s": round(sized),
        "rate_over_same_size": round(state / sized, 2),
        "same_size_over_bare_unary": round(sized / bare_rate, 2),
        "deflated_answer_bytes": deflated_size,
        "get_city_state_deflated_rate_per_s": round(deflated),
        "deflated_rate_over_bare_unary": round(deflated / bare_rate, 2),
    }


def _fanout(
    service: CloudService, channel: grpc.Channel, watchers: int, segments: int, changes: int = 10
) -> list[float]:
    from roadsense.proto.v1 import city_pb2, city_pb2_grpc

    stub = city_pb2_grpc.CityServiceStub(channel)
    lock = threading.Lock()
    arrivals: dict[int, list[float]] = {}
    ready = threading.Barrier(watchers + 1)
    streams = []

    def consume(stream: Any) -> None:
        try:
            first = True
            for update in stream:
                if first:
                    first = False
                    ready.wait(60)
                    continue
                if update.WhichOneof("update") == "segment":
                    seq = update.segment.reports
                    with lock:
                        arrivals.setdefault(seq, []).append(time.perf_counter())
        except grpc.RpcError:
            return

    threads = []
    for _ in range(watchers):
        stream = stub.WatchCityState(
            city_pb2.WatchCityStateRequest(segment_ids=["seg00000"]), timeout=600
        )
        streams.append(stream)
        thread = threading.Thread(target=consume, args=(stream,), daemon=True)
        thread.start()
        threads.append(thread)
    ready.wait(60)
    published: dict[int, float] = {}
    for change in range(changes):
        reading = _reading(0, change + 2, change % 5)
        started = time.perf_counter()
        changed = service.tracker.apply([reading])
        service.feed.publish(changed)
        published[changed[0].reports] = started
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with lock:
            if sum(len(v) for v in arrivals.values()) >= watchers * changes:
                break
        time.sleep(0.01)
    for stream in streams:
        stream.cancel()
    with lock:
        return [
            (arrival - published[reports]) * 1000
            for reports, times in arrivals.items()
            if reports in published
            for arrival in times
        ]
