"""`roadsense bench delivery`: what waiting for the cloud's confirmation costs the edge.

One device's outbox, forwarder and MQTT client (as the agent wires them) send
real congestion reports at a fixed rate through a private Mosquitto to the
real cloud ingest, once with ``delivery = "broker"`` (a report leaves on the
broker's PUBACK: the baseline) and once with ``delivery = "cloud"`` (it leaves
on the cloud's DeliveryAck), in the same run. Per mode:

- ``mean_depth`` / ``max_depth`` and ``mean_bytes``: the outbox sampled every
  20 ms while reports flow.
- ``mean_latency_ms``: time a report spends in the outbox, by Little's law
  (mean depth / arrival rate).
- ``drain_ms``: from the last report stored until the outbox is empty.
- ``cloud_acks``: DeliveryAck messages the cloud sent (one per device per batch).
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

from roadsense.bench.ingest import report_payload
from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig, GrpcConfig, IngestConfig, StoreConfig
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.edge.config import OutboxConfig
from roadsense.edge.forwarder import Confirmation, Forwarder
from roadsense.edge.outbox import Outbox
from roadsense.harness.broker import start_mosquitto
from roadsense.proto.topics import ack_topic, congestion_topic

SAMPLE_S = 0.02


def _run_mode(
    mode: Literal["broker", "cloud"], mqtt: MqttConfig, workdir: Path, rate: float, seconds: float
) -> dict[str, float]:
    device = f"bench-{mode}"
    outbox = Outbox(OutboxConfig(path=workdir / f"{device}.sqlite"))
    client = MqttPublisher(mqtt, client_id=device, max_inflight=200)
    confirmation = Confirmation(30.0, 600.0) if mode == "cloud" else None
    forwarder = Forwarder(outbox, client, 200, 50.0, confirmation)

    if mode == "cloud":
        client.subscribe(ack_topic(device), functools.partial(forwarder.on_delivery_ack, device))
    client.set_on_connect(forwarder.connected)
    client.start()
    if not client.wait_connected(10.0):
        raise RuntimeError("benchmark device could not connect to its broker")
    forwarder.start()
    depths: list[int] = []
    sizes: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(SAMPLE_S):
            stats = outbox.stats()
            depths.append(stats.depth)
            sizes.append(stats.bytes)

    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
    sampler.start()
    topic = congestion_topic(device, "cam1")
    total = int(rate * seconds)
    started = time.perf_counter()
    for i in range(total):
        outbox.append(topic, lambda seq: report_payload(device, seq))
        forwarder.notify()
        pause = started + (i + 1) / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    last = time.perf_counter()
    sampling.set()
    sampler.join()
    deadline = last + 30.0
    while outbox.pending_count() and time.perf_counter() < deadline:
        time.sleep(0.002)
    drained = time.perf_counter()
    left = outbox.pending_count()
    forwarder.stop()
    client.stop()
    outbox.close()
    mean_depth = statistics.fmean(depths) if depths else 0.0
    return {
        "reports": total,
        "left_in_outbox": left,
        "mean_depth": round(mean_depth, 1),
        "max_depth": max(depths, default=0),
        "mean_bytes": round(statistics.fmean(sizes) if sizes else 0.0),
        "mean_latency_ms": round(1000 * mean_depth / rate, 1),
        "drain_ms": round(1000 * (drained - last), 1),
    }


def run_delivery_bench(rate: float = 200.0, seconds: float = 10.0) -> dict[str, Any]:
    """Both modes at ``rate`` reports/s for ``seconds`` each, on one broker and cloud."""
    with tempfile.TemporaryDirectory(prefix="roadsense-bench-delivery-") as tmp:
        workdir = Path(tmp)
        broker = start_mosquitto(workdir / "broker")
        mqtt = MqttConfig(host=broker.host, port=broker.port)
        cloud = CloudService(
            CloudConfig(
                mqtt=mqtt,
                ingest=IngestConfig(client_id="bench-delivery-cloud"),
                grpc=GrpcConfig(host="127.0.0.1", port=0),
                store=StoreConfig(path=workdir / "city.sqlite"),
            )
        )
        cloud.start()
        try:
            if not cloud.ingest.wait_connected(10.0):
                raise RuntimeError("benchmark cloud could not connect to its broker")
            result: dict[str, Any] = {"rate_per_s": rate, "seconds": seconds}
            for mode in ("broker", "cloud"):
                acks_before = cloud.ingest.stats().confirmations
                figures = _run_mode(mode, mqtt, workdir, rate, seconds)
                figures["cloud_acks"] = cloud.ingest.stats().confirmations - acks_before
                result[mode] = figures
        finally:
            cloud.stop()
            broker.stop()
    broker_ms = result["broker"]["mean_latency_ms"]
    result["latency_ratio"] = (
        round(result["cloud"]["mean_latency_ms"] / broker_ms, 2) if broker_ms else None
    )
    return result
