"""1,000 messages, half of them hostile, through a real broker: the good ones all stored."""

from __future__ import annotations

import math
import random
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.core.timeutil import now_ms

from ..support.factories import report
from ..support.helpers import running_cloud, wait_until

pytestmark = pytest.mark.integration

DEVICE = "hostile-dev"
TOPIC = f"roadsense/v1/{DEVICE}/cam1/congestion"


def _hostile(kind: str, seq: int, rng: random.Random) -> tuple[str, bytes]:
    if kind == "random_bytes":
        return TOPIC, rng.randbytes(rng.randint(1, 300))
    if kind == "truncated":
        whole = report(device=DEVICE, seq=seq).SerializeToString()
        return TOPIC, whole[: len(whole) // 2]
    if kind == "wrong_device":
        return TOPIC, report(device="impostor", seq=seq).SerializeToString()
    if kind == "huge":
        return TOPIC, rng.randbytes(200_000)
    if kind == "future":
        later = now_ms() + 24 * 3600 * 1000
        return TOPIC, report(device=DEVICE, seq=seq, capture_time_ms=later).SerializeToString()
    if kind == "window_after_capture":
        t = now_ms()
        late_window = report(
            device=DEVICE, seq=seq, capture_time_ms=t, window_start_ms=t + 3_600_000
        )
        return TOPIC, late_window.SerializeToString()
    if kind == "from_1990":
        return TOPIC, report(
            device=DEVICE, seq=seq, capture_time_ms=631_152_000_000
        ).SerializeToString()
    assert kind == "nan"
    nan = [math.nan, 0.5, 0.5, 0.0, 0.0]
    return TOPIC, report(device=DEVICE, seq=seq, probabilities=nan).SerializeToString()


EXPECTED_CODES = {
    "wrong_device": "device_mismatch",
    "huge": "too_large",
    "future": "future",
    "nan": "bad_probabilities",
    "window_after_capture": "bad_time",
    "from_1990": "too_late",
}


def test_hostile_traffic_never_stops_ingest(cloud: CloudService, mqtt_config: MqttConfig) -> None:
    rng = random.Random(1234)
    kinds = [*EXPECTED_CODES, "random_bytes", "truncated"]
    messages: list[tuple[str, str, bytes]] = []
    valid_seqs = []
    for i in range(1000):
        seq = i + 1
        if i % 2 == 0:
            messages.append(("valid", TOPIC, report(device=DEVICE, seq=seq).SerializeToString()))
            valid_seqs.append(seq)
        else:
            kind = kinds[(i // 2) % len(kinds)]
            messages.append((kind, *_hostile(kind, seq, rng)))
    publisher = MqttPublisher(mqtt_config, client_id="hostile-publisher", max_inflight=100)
    publisher.start()
    assert publisher.wait_connected(10.0)
    acked: list[int] = []
    try:
        for _, topic, payload in messages:
            while not publisher.publish(topic, payload, on_ack=lambda: acked.append(1)):
                pass
        assert wait_until(lambda: len(acked) == len(messages), 60.0)
    finally:
        publisher.stop()

    bad = Counter(kind for kind, _, _ in messages if kind != "valid")
    assert wait_until(
        lambda: sum(1 for t, _ in cloud.store.dead_letters() if t == TOPIC) == sum(bad.values()),
        60.0,
    )
    stored = sorted(seq for device, seq in cloud.store.report_keys() if device == DEVICE)
    assert stored == valid_seqs
    codes = cloud.store.dead_letter_codes()
    for kind, code in EXPECTED_CODES.items():
        assert codes.get(code, 0) >= bad[kind], (kind, codes)
    # Random bytes and truncated reports fail to parse or fail validation, never pass.
    assert codes.get("bad_protobuf", 0) + codes.get("bad_field", 0) + codes.get(
        "bad_probabilities", 0
    ) + codes.get("schema", 0) + codes.get("camera_mismatch", 0) >= (
        bad["random_bytes"] + bad["truncated"] + bad["nan"]
    )
    # The 1990 reports never became the segment's state.
    (segment,) = cloud.tracker.snapshot(now_ms(), ["seg-1"])
    assert segment.updated_ms > now_ms() - 600_000
    assert cloud.ingest.is_connected()
    with grpc.insecure_channel(cloud.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_the_configured_lateness_limit_reaches_the_ingest(
    cloud_config: CloudConfig, mqtt_config: MqttConfig
) -> None:
    hour = cloud_config.ingest.model_copy(update={"max_late_s": 3600.0})
    with running_cloud(cloud_config.model_copy(update={"ingest": hour})) as cloud:
        publisher = MqttPublisher(mqtt_config, client_id="late-publisher")
        publisher.start()
        assert publisher.wait_connected(10.0)
        two_hours_old = report(device=DEVICE, capture_time_ms=now_ms() - 7_200_000)
        publisher.publish(TOPIC, two_hours_old.SerializeToString())
        publisher.stop()
        assert wait_until(lambda: bool(cloud.store.report_keys() or cloud.store.dead_letters()))
        assert (cloud.store.report_keys(), cloud.store.dead_letter_codes()) == ([], {"too_late": 1})
