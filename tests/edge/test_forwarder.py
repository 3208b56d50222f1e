"""The forwarder: bounded window, live reports before the backlog, paced replay."""

from __future__ import annotations

from pathlib import Path

from roadsense.core.publisher import MemoryPublisher
from roadsense.edge.forwarder import Forwarder

from ..support.helpers import outbox_of, published_seqs, wait_until


def test_inflight_window_is_never_exceeded(tmp_path: Path) -> None:
    outbox = outbox_of(tmp_path, 50)
    publisher = MemoryPublisher(auto_ack=False)
    publisher.start()
    forwarder = Forwarder(outbox, publisher, max_inflight=10, replay_rate_per_s=1000)
    forwarder.start()
    try:
        assert wait_until(lambda: len(publisher.messages) == 10)
        assert not wait_until(lambda: len(publisher.messages) > 10, timeout_s=0.5)
        publisher.ack_all()
        assert wait_until(lambda: len(publisher.messages) == 20)
        assert published_seqs(publisher) == list(range(1, 21))
        assert wait_until(lambda: outbox.pending_count() == 40)
    finally:
        forwarder.stop()


def test_live_reports_overtake_a_paced_backlog(tmp_path: Path) -> None:
    outbox = outbox_of(tmp_path, 30)  # made before the connection: backlog
    publisher = MemoryPublisher()
    publisher.start()
    forwarder = Forwarder(outbox, publisher, max_inflight=100, replay_rate_per_s=10)
    forwarder.start()
    try:
        assert wait_until(lambda: len(publisher.messages) >= 3)
        live = outbox.append("t", lambda seq: seq.to_bytes(4, "big"))
        forwarder.notify()
        assert wait_until(lambda: live in published_seqs(publisher), timeout_s=2.0)
        sent = published_seqs(publisher)
        position = sent.index(live)
        assert position < 30, "the live report waited for the whole backlog"
        assert wait_until(lambda: len(publisher.messages) == 31, timeout_s=10.0)
        backlog = [s for s in published_seqs(publisher) if s != live]
        assert backlog == list(range(1, 31))  # the backlog itself stays in order
        assert wait_until(lambda: outbox.pending_count() == 0)
    finally:
        forwarder.stop()


def test_refused_publish_is_retried_after_reconnect(tmp_path: Path) -> None:
    outbox = outbox_of(tmp_path, 3)
    publisher = MemoryPublisher(auto_ack=False)
    publisher.start()
    forwarder = Forwarder(outbox, publisher, max_inflight=10, replay_rate_per_s=1000)
    forwarder.start()
    try:
        assert wait_until(lambda: len(publisher.messages) == 3)
        publisher.refuse(1)
        publisher.ack_all()
        assert wait_until(lambda: outbox.pending_count() == 1)
        publisher.messages.clear()
        forwarder.connected()
        assert wait_until(lambda: published_seqs(publisher) == [2])
        publisher.ack_all()
        assert wait_until(lambda: outbox.pending_count() == 0)
    finally:
        forwarder.stop()
