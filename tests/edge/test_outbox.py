"""The durable outbox: sequence numbers, acknowledgements, bounds, restarts."""

from __future__ import annotations

import time
from pathlib import Path

from roadsense.edge.config import OutboxConfig
from roadsense.edge.outbox import Outbox


def _payload(seq: int) -> bytes:
    return f"report-{seq}".encode()


def test_sequence_numbers_increase_and_survive_reopen(tmp_path: Path) -> None:
    config = OutboxConfig(path=tmp_path / "o.sqlite")
    outbox = Outbox(config)
    assert [outbox.append("t", _payload) for _ in range(3)] == [1, 2, 3]
    outbox.acknowledge_many([1, 2, 3])
    outbox.close()
    reopened = Outbox(config)
    assert reopened.append("t", _payload) == 4
    assert reopened.pending_count() == 1
    assert reopened.acknowledged_count() == 3


def test_rows_leave_only_when_acknowledged(tmp_path: Path) -> None:
    outbox = Outbox(OutboxConfig(path=tmp_path / "o.sqlite"))
    for _ in range(5):
        outbox.append("roadsense/v1/d/c/congestion", _payload)
    outbox.acknowledge_many([2, 4])
    rows = outbox.pending(0, 10)
    assert [(r.seq, r.payload) for r in rows] == [
        (1, b"report-1"),
        (3, b"report-3"),
        (5, b"report-5"),
    ]
    assert [r.seq for r in outbox.pending(3, 10)] == [5]
    assert outbox.acknowledged_count() == 2


def test_row_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    outbox = Outbox(OutboxConfig(path=tmp_path / "o.sqlite", max_rows=3))
    for _ in range(5):
        outbox.append("t", _payload)
    assert [r.seq for r in outbox.pending(0, 10)] == [3, 4, 5]
    assert outbox.dropped_count() == 2


def test_byte_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    outbox = Outbox(OutboxConfig(path=tmp_path / "o.sqlite", max_bytes=1024))
    for _ in range(3):
        outbox.append("t", lambda seq: bytes(400))
    assert [r.seq for r in outbox.pending(0, 10)] == [2, 3]
    assert outbox.dropped_count() == 1


def test_age_bound_drops_expired(tmp_path: Path) -> None:
    outbox = Outbox(OutboxConfig(path=tmp_path / "o.sqlite", max_age_s=0.001))
    outbox.append("t", _payload)
    time.sleep(0.01)
    outbox.append("t", _payload)
    assert [r.seq for r in outbox.pending(0, 10)] == [2]
    assert outbox.dropped_count() == 1
    assert outbox.next_seq() == 3
