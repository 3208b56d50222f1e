"""At least once end to end: a report leaves the outbox when the cloud confirms it.

Unit tests on the outbox and the forwarder with an in-memory publisher, then
the broker-crash scenario on a real Mosquitto that saves nothing before it is
killed, with the real cloud and an agent on the real clip.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import pytest

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig
from roadsense.cloud.domain import Rejected
from roadsense.cloud.ingest.decode import decode_message
from roadsense.cloud.ingest.subscriber import _Incoming, committed_reports
from roadsense.core.errors import PayloadError
from roadsense.core.publisher import MemoryPublisher
from roadsense.core.timeutil import now_ms
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.config import CameraConfig, EdgeConfig, OutboxConfig, ReportConfig
from roadsense.edge.forwarder import Confirmation, Forwarder
from roadsense.edge.outbox import Outbox
from roadsense.edge.runner import build_agent
from roadsense.harness.broker import start_mosquitto
from roadsense.proto.acks import decode_delivery_ack, encode_delivery_ack, seq_ranges
from roadsense.proto.topics import congestion_topic

from ..conftest import SAMPLE_VIDEO
from ..support.factories import report
from ..support.helpers import outbox_of, published_seqs, wait_until

NOW = 1_700_000_000_000


def test_seq_ranges_round_trip_through_a_delivery_ack() -> None:
    ranges = seq_ranges([7, 3, 4, 5, 9, 4])
    assert ranges == [(3, 5), (7, 7), (9, 9)]
    assert decode_delivery_ack(encode_delivery_ack("dev-1", ranges, NOW), "dev-1") == ranges


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"\xff\xff", "not a DeliveryAck protobuf"),
        (encode_delivery_ack("dev-2", [(1, 2)], NOW), "for 'dev-2', not for 'dev-1'"),
        (encode_delivery_ack("dev-1", [(5, 4)], NOW), "range 5..4 is empty"),
        (encode_delivery_ack("dev-1", [(0, 4)], NOW), "range 0..4 is empty or starts at 0"),
    ],
)
def test_a_bad_delivery_ack_is_refused_with_the_reason(payload: bytes, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        decode_delivery_ack(payload, "dev-1")


def test_a_broker_ack_keeps_the_report_until_the_cloud_confirms_it(tmp_path: Path) -> None:
    outbox = outbox_of(tmp_path, 5)
    outbox.mark_published([1, 2, 3], NOW, timeout_ms=1000, max_ms=8000)
    stats = outbox.stats()
    assert (stats.depth, stats.awaiting_cloud, stats.acknowledged) == (5, 3, 3)
    # Published and acknowledged reports are no longer "pending" for the broker...
    assert [r.seq for r in outbox.pending(0, 10)] == [4, 5]
    # ...and are due again only once their wait is over.
    assert outbox.due_for_resend(NOW + 999, 10) == []
    assert [r.seq for r in outbox.due_for_resend(NOW + 1000, 10)] == [1, 2, 3]
    assert outbox.confirm([(1, 2), (5, 5)]) == 3
    stats = outbox.stats()
    assert (stats.depth, stats.awaiting_cloud, stats.confirmed) == (2, 1, 3)
    assert [r.seq for r in outbox.pending(0, 10)] == [4]


def test_each_unconfirmed_publication_waits_twice_as_long_up_to_the_cap(tmp_path: Path) -> None:
    outbox = outbox_of(tmp_path, 1)
    waits = []
    for _ in range(6):
        outbox.mark_published([1], NOW, timeout_ms=1000, max_ms=8000)
        row = outbox._db.execute("SELECT resend_at_ms FROM outbox").fetchone()
        waits.append(row[0] - NOW)
    assert waits == [1000, 2000, 4000, 8000, 8000, 8000]
    # A reconnection: the broker may have lost it, so it is due again soon.
    outbox.resend_unconfirmed_by(NOW + 1500)
    assert [r.seq for r in outbox.due_for_resend(NOW + 1500, 10)] == [1]


def test_an_old_outbox_file_is_upgraded_and_its_reports_are_sent(tmp_path: Path) -> None:
    outbox = outbox_of(tmp_path, 2)
    outbox._db.execute("DROP INDEX outbox_resend_at")
    outbox._db.execute("ALTER TABLE outbox DROP COLUMN attempts")
    outbox._db.execute("ALTER TABLE outbox DROP COLUMN resend_at_ms")
    outbox._db.execute("DELETE FROM counters WHERE name = 'confirmed'")
    outbox._db.execute("DELETE FROM _migrations WHERE name = '0003_cloud_confirmation'")
    outbox._db.conn.commit()
    outbox.close()
    reopened = Outbox(OutboxConfig(path=tmp_path / "o.sqlite"))
    assert [r.seq for r in reopened.pending(0, 10)] == [1, 2]
    assert reopened.stats().confirmed == 0


def test_the_forwarder_removes_only_what_the_cloud_confirms_and_sends_the_rest_again(
    tmp_path: Path,
) -> None:
    outbox = outbox_of(tmp_path, 4)
    publisher = MemoryPublisher()
    publisher.start()
    forwarder = Forwarder(outbox, publisher, 10, 1000, Confirmation(0.3, 10.0))
    forwarder.start()
    try:
        assert wait_until(lambda: published_seqs(publisher) == [1, 2, 3, 4])
        assert wait_until(lambda: outbox.stats().awaiting_cloud == 4)
        forwarder.confirm([(1, 2)])
        assert wait_until(lambda: [r.seq for r in outbox.pending(0, 10, None)] == [])
        assert wait_until(lambda: outbox.stats().depth == 2)
        # 3 and 4 were never confirmed: published again after the timeout.
        assert wait_until(lambda: published_seqs(publisher)[4:] == [3, 4], 5.0)
        # The count follows the publish (the forwarder's thread counts once it returns).
        assert wait_until(lambda: forwarder.resent == 2, 5.0)
        forwarder.confirm([(3, 4)])
        assert wait_until(lambda: outbox.pending_count() == 0)
        assert forwarder.confirmed == 4
    finally:
        forwarder.stop()


def test_a_restart_publishes_what_the_last_run_left_unconfirmed_at_once(tmp_path: Path) -> None:
    # The last run took the cloud's confirmation off the wire and died before applying it:
    # its reports wait 10 minutes for a resend, which a new process must not wait for.
    outbox = outbox_of(tmp_path, 3)
    outbox.mark_published([1, 2], now_ms(), timeout_ms=600_000, max_ms=600_000)
    publisher = MemoryPublisher()
    publisher.start()
    forwarder = Forwarder(outbox, publisher, 10, 1000, Confirmation(600.0, 600.0))
    forwarder.start()
    try:
        assert wait_until(lambda: sorted(published_seqs(publisher)) == [1, 2, 3], 5.0)
        assert wait_until(lambda: forwarder.resent == 2, 5.0)
        # A later reconnection of the same process waits the confirmation timeout again.
        assert wait_until(lambda: outbox.stats().awaiting_cloud == 3)
        forwarder.connected()
        time.sleep(0.5)
        assert sorted(published_seqs(publisher)) == [1, 2, 3]
        forwarder.confirm([(1, 3)])
        assert wait_until(lambda: outbox.pending_count() == 0)
    finally:
        forwarder.stop()


def test_every_committed_report_is_confirmed_to_its_own_device_dead_letters_too() -> None:
    good = report(device="dev-1", seq=4).SerializeToString()
    bad = report(device="dev-1", seq=5, probabilities=[0.9, 0.9, 0.0, 0.0, 0.0])
    forged = report(device="dev-2", seq=6)  # published on dev-1's topic
    topic = congestion_topic("dev-1", "cam1")
    received = now_ms()
    batch = [
        _Incoming(topic, payload, mid, 1, received)
        for mid, payload in enumerate(
            [good, bad.SerializeToString(), forged.SerializeToString(), b"junk"], start=1
        )
    ]
    records = [decode_message(m.topic, m.payload, received, 30_000) for m in batch]
    assert [type(r).__name__ for r in records] == ["Reading", "Rejected", "Rejected", "Rejected"]
    assert isinstance(records[3], Rejected)
    # The topic's device is the one the broker authenticated: only it hears back.
    assert committed_reports(batch, records) == {"dev-1": [4, 5, 6]}


# Integration: the broker crashes with the cloud offline -------------------


def _edge(
    config: CloudConfig, device: str, tmp_path: Path, delivery: Literal["cloud", "broker"]
) -> EdgeConfig:
    camera = CameraConfig(
        id="cam1", source=str(SAMPLE_VIDEO), segment_id=f"{device}-seg", sample_hz=8, loop=True
    )
    outbox = OutboxConfig(
        path=tmp_path / f"{device}.sqlite", delivery=delivery, confirm_timeout_s=1.0
    )
    return EdgeConfig(
        device_id=device,
        mqtt=config.mqtt,
        reports=ReportConfig(window=2, interval_s=0.3),
        outbox=outbox,
        health_interval_s=1.0,
        cameras=[camera],
    )


def _all_with_the_broker(agent: EdgeAgent, delivery: str) -> bool:
    stats = agent.outbox.stats()
    if delivery == "broker":
        return stats.depth == 0
    return stats.depth == stats.awaiting_cloud


@pytest.mark.integration
@pytest.mark.parametrize("delivery", ["cloud", "broker"])
def test_a_broker_crash_with_the_cloud_offline(
    tmp_path: Path, cloud_config: CloudConfig, delivery: Literal["cloud", "broker"]
) -> None:
    """cloud: nothing lost, nothing stored twice. broker: what the broker held is gone."""
    # Like the fleet's broker (autosave every 60 s), but nothing is saved during the test.
    broker = start_mosquitto(tmp_path / "broker", extra_config="autosave_interval 3600\n")
    config = cloud_config.model_copy(
        update={
            "mqtt": cloud_config.mqtt.model_copy(update={"port": broker.port}),
            "ingest": cloud_config.ingest.model_copy(update={"shared_group": ""}),
        }
    )
    device = f"crash-{delivery}"
    agent = build_agent(_edge(config, device, tmp_path, delivery))
    service = CloudService(config)
    try:
        service.start()
        assert service.ingest.wait_connected(10.0)
        agent.start()
        assert wait_until(lambda: agent.forwarder.acknowledged >= 3)
        service.stop()  # offline; the broker queues for its persistent session
        offline_from = agent.stats.reports_created + 1
        assert wait_until(lambda: agent.stats.reports_created >= offline_from + 8)
        agent.stop_capture()
        created = agent.stats.reports_created
        # The broker acknowledged every report to the device, then dies before saving.
        assert wait_until(lambda: _all_with_the_broker(agent, delivery))
        broker.kill()
        broker.restart()
        service = CloudService(config)
        service.start()
        assert service.ingest.wait_connected(10.0)

        def stored() -> list[int]:
            return sorted(s for d, s in service.store.report_keys() if d == device)

        if delivery == "cloud":
            assert agent.flush(30.0), agent.outbox.stats()
            assert wait_until(lambda: stored() == list(range(1, created + 1)), 10.0), stored()
            assert agent.forwarder.resent >= created - offline_from + 1
        else:
            time.sleep(2.0)  # nothing more can arrive: give a late delivery the chance anyway
            lost = set(range(1, created + 1)) - set(stored())
            assert set(range(offline_from, created + 1)) <= lost
            assert agent.outbox.pending_count() == 0  # let go on the broker's PUBACK
    finally:
        agent.stop()
        service.stop()
        broker.stop()


@pytest.mark.integration
def test_mosquittos_shared_subscription_restart_gap_loses_nothing_end_to_end(
    tmp_path: Path, cloud_config: CloudConfig
) -> None:
    """Mosquitto drops what arrives for an offline shared subscriber after a restart
    (tests/test_broker_limits.py); the device publishes those reports again."""
    broker = start_mosquitto(tmp_path / "broker")
    config = cloud_config.model_copy(
        update={"mqtt": cloud_config.mqtt.model_copy(update={"port": broker.port})}
    )
    assert config.ingest.shared_group  # the conftest's cloud shares its subscription
    device = "shared-gap"
    agent = build_agent(_edge(config, device, tmp_path, "cloud"))
    service = CloudService(config)
    try:
        service.start()
        assert service.ingest.wait_connected(10.0)
        agent.start()
        assert wait_until(lambda: agent.forwarder.confirmed >= 3)
        service.stop()
        time.sleep(1.5)  # past the test broker's autosave_interval: the session is saved
        broker.stop()
        broker.restart()
        offline_from = agent.stats.reports_created + 1
        assert wait_until(lambda: agent.stats.reports_created >= offline_from + 5)
        agent.stop_capture()
        created = agent.stats.reports_created
        service = CloudService(config)
        service.start()
        assert service.ingest.wait_connected(10.0)
        assert agent.flush(30.0), agent.outbox.stats()
        stored = sorted(s for d, s in service.store.report_keys() if d == device)
        assert stored == list(range(1, created + 1))
    finally:
        agent.stop()
        service.stop()
        broker.stop()


def test_the_forwarder_takes_only_its_own_devices_confirmations(tmp_path: Path) -> None:
    outbox = outbox_of(tmp_path, 2)
    publisher = MemoryPublisher()
    publisher.start()
    forwarder = Forwarder(outbox, publisher, 10, 1000, Confirmation(30.0, 60.0))
    forwarder.start()
    try:
        assert wait_until(lambda: outbox.stats().awaiting_cloud == 2)
        forwarder.on_delivery_ack("dev-1", "t", encode_delivery_ack("dev-2", [(1, 2)], NOW))
        forwarder.on_delivery_ack("dev-1", "t", b"junk")
        assert not wait_until(lambda: outbox.pending_count() < 2, 0.5)
        forwarder.on_delivery_ack("dev-1", "t", encode_delivery_ack("dev-1", [(1, 2)], NOW))
        assert wait_until(lambda: outbox.pending_count() == 0)
    finally:
        forwarder.stop()
