"""The durable outbox: every report is in SQLite before it is published.

A report gets its per-device sequence number in the same transaction that
stores it, so a crash can neither lose a stored report nor reuse a number.
The file is written with ``synchronous=FULL``: roadside boxes lose power, and
a commit that a power cut could undo might hand out a sequence number twice.
A row leaves when the cloud confirms it committed the report (or, with
``delivery = "broker"``, on the broker's QoS 1 PUBACK), or when a bound
(rows, bytes, age) forces the oldest out; those drops are counted. A row the
broker acknowledged but the cloud has not confirmed carries the time it is
due to be published again (``resend_at_ms``): a broker that crashed before
saving it, or a cloud session it lost, cannot lose the report.
The same file keeps settings changed by remote commands.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from roadsense.core.errors import OutboxWriteError
from roadsense.core.sqlite import Migration, migrate, open_database, transaction
from roadsense.core.timeutil import now_ms
from roadsense.edge.config import OutboxConfig

logger = logging.getLogger(__name__)

PayloadBuilder = Callable[[int], bytes]
"""Serialises a report given the sequence number the outbox assigns to it."""


def _create_tables(db: Database) -> None:
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, "
        "payload BLOB NOT NULL, created_ms INTEGER NOT NULL)"
    )
    db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute(
        "INSERT INTO counters (name, value) VALUES ('next_seq', 1), ('dropped', 0), "
        "('acknowledged', 0)"
    )


def _create_settings(db: Database) -> None:
    db.execute("CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _add_confirmation(db: Database) -> None:
    # NULL: not yet acknowledged by the broker; else when to publish it again unless
    # the cloud confirms it first.
    db.execute("ALTER TABLE outbox ADD COLUMN resend_at_ms INTEGER")
    db.execute("ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX outbox_resend_at ON outbox (resend_at_ms)")
    db.execute("INSERT INTO counters (name, value) VALUES ('confirmed', 0)")


MIGRATIONS = [
    Migration("0001_outbox", _create_tables),
    Migration("0002_settings", _create_settings),
    Migration("0003_cloud_confirmation", _add_confirmation),
]

MAX_BACKOFF_DOUBLINGS = 20
"""Caps the exponent of the resend wait (the configured maximum caps the wait itself)."""


@dataclass(frozen=True)
class OutboxRow:
    """A stored report waiting for its acknowledgement."""

    seq: int
    topic: str
    payload: bytes


@dataclass(frozen=True)
class OutboxStats:
    """How full the outbox is."""

    depth: int
    bytes: int
    oldest_age_s: float
    dropped: int
    acknowledged: int
    next_seq: int
    awaiting_cloud: int = 0
    confirmed: int = 0


class Outbox:
    """SQLite-backed, bounded, ack-driven queue of outgoing reports."""

    def __init__(self, config: OutboxConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        try:
            self._db = open_database(config.path, synchronous="FULL")
            migrate(self._db, MIGRATIONS)
        except sqlite3.Error as err:
            raise OutboxWriteError(f"{config.path}: cannot open the outbox: {err}") from err

    def append(self, topic: str, build_payload: PayloadBuilder) -> int:
        """Store a report; ``build_payload(seq)`` serialises it with its sequence number."""
        return self.append_many([(topic, build_payload)])[0]

    def append_many(self, reports: Sequence[tuple[str, PayloadBuilder]]) -> list[int]:
        """Store several reports in one transaction; return their sequence numbers."""
        created = now_ms()
        try:
            with self._lock, transaction(self._db):
                first = self._counter("next_seq")
                rows = [
                    (first + i, topic, build(first + i), created)
                    for i, (topic, build) in enumerate(reports)
                ]
                self._db.conn.executemany(
                    "INSERT INTO outbox (seq, topic, payload, created_ms) VALUES (?, ?, ?, ?)",
                    rows,
                )
                self._db.execute(
                    "UPDATE counters SET value = ? WHERE name = 'next_seq'", [first + len(rows)]
                )
                dropped = self._enforce_bounds(created)
        except sqlite3.Error as err:
            # Disk full, read-only medium, corrupt file: nothing was stored.
            raise OutboxWriteError(f"{self._config.path}: cannot store reports: {err}") from err
        if dropped:
            logger.warning("outbox bound reached: dropped the %d oldest reports", dropped)
        return [row[0] for row in rows]

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", [name]).fetchone()
        return int(row[0])

    def _enforce_bounds(self, now: int) -> int:
        cfg = self._config
        cursor = self._db.execute(
            "DELETE FROM outbox WHERE created_ms < ?", [now - int(cfg.max_age_s * 1000)]
        )
        dropped = cursor.rowcount
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
        ).fetchone()
        if count > cfg.max_rows:
            dropped += self._db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                [count - cfg.max_rows],
            ).rowcount
        if size > cfg.max_bytes:
            # Oldest first until the rest fits.
            rows = self._db.execute("SELECT seq, LENGTH(payload) FROM outbox ORDER BY seq")
            excess = size - cfg.max_bytes
            cut = []
            for seq, length in rows:
                if excess <= 0:
                    break
                cut.append((seq,))
                excess -= length
            dropped += self._db.conn.executemany("DELETE FROM outbox WHERE seq = ?", cut).rowcount
        if dropped:
            self._db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'dropped'", [dropped]
            )
        return dropped

    def pending(self, after: int, limit: int, before: int | None = None) -> list[OutboxRow]:
        """Reports the broker never acknowledged with ``after < seq < before``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? AND seq < ? "
                "AND resend_at_ms IS NULL ORDER BY seq LIMIT ?",
                [after, before if before is not None else 2**63 - 1, limit],
            ).fetchall()
        return [OutboxRow(int(s), str(t), bytes(p)) for s, t, p in rows]

    def due_for_resend(self, now: int, limit: int) -> list[OutboxRow]:
        """Reports the broker acknowledged and the cloud did not confirm in time, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE resend_at_ms <= ? "
                "ORDER BY seq LIMIT ?",
                [now, limit],
            ).fetchall()
        return [OutboxRow(int(s), str(t), bytes(p)) for s, t, p in rows]

    def acknowledge_many(self, seqs: list[int]) -> None:
        """The broker has these reports and is the last hop: remove them in one transaction."""
        with self._lock, transaction(self._db):
            removed = self._db.conn.executemany(
                "DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs]
            ).rowcount
            self._db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'acknowledged'", [removed]
            )

    def mark_published(self, seqs: list[int], now: int, timeout_ms: int, max_ms: int) -> None:
        """The broker has these reports: keep them until the cloud confirms, due again later.

        The n-th acknowledged publication of a report waits ``timeout_ms * 2**(n-1)``
        (at most ``max_ms``) before the report is due again.
        """
        with self._lock, transaction(self._db):
            marked = self._db.conn.executemany(
                "UPDATE outbox SET resend_at_ms = ? + MIN(?, ? * (1 << MIN(attempts, ?))), "
                "attempts = attempts + 1 WHERE seq = ?",
                [(now, max_ms, timeout_ms, MAX_BACKOFF_DOUBLINGS, s) for s in seqs],
            ).rowcount
            self._db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'acknowledged'", [marked]
            )

    def confirm(self, ranges: Sequence[tuple[int, int]]) -> int:
        """The cloud committed these reports (inclusive seq ranges): remove them."""
        with self._lock, transaction(self._db):
            removed = self._db.conn.executemany(
                "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", list(ranges)
            ).rowcount
            self._db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'confirmed'", [removed]
            )
        return removed

    def resend_unconfirmed_by(self, deadline: int) -> None:
        """After a reconnection: every unconfirmed report is due again by ``deadline`` at latest.

        The broker may have restarted without the reports it acknowledged, so the
        backoff of a long cloud outage must not hold them back for long.
        """
        with self._lock, transaction(self._db):
            self._db.execute(
                "UPDATE outbox SET resend_at_ms = ? WHERE resend_at_ms > ?", [deadline, deadline]
            )

    def stats(self) -> OutboxStats:
        """Depth, bytes, age of the oldest row and the counters, in one read."""
        with self._lock:
            depth, size, oldest, awaiting = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), MIN(created_ms), "
                "COUNT(resend_at_ms) FROM outbox"
            ).fetchone()
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return OutboxStats(
            depth=int(depth),
            bytes=int(size),
            oldest_age_s=max(0.0, (now_ms() - oldest) / 1000) if oldest is not None else 0.0,
            dropped=int(counters["dropped"]),
            acknowledged=int(counters["acknowledged"]),
            next_seq=int(counters["next_seq"]),
            awaiting_cloud=int(awaiting),
            confirmed=int(counters["confirmed"]),
        )

    def pending_count(self) -> int:
        """Reports stored and not yet delivered (to the cloud, or the broker if it is last)."""
        return self.stats().depth

    def dropped_count(self) -> int:
        """Reports dropped by the bounds since the outbox was created."""
        return self.stats().dropped

    def acknowledged_count(self) -> int:
        """Publications the broker acknowledged since the outbox was created."""
        return self.stats().acknowledged

    def next_seq(self) -> int:
        """The sequence number the next report will get."""
        return self.stats().next_seq

    def load_setting(self, name: str) -> Any:
        """A persisted setting (JSON), or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", [name]).fetchone()
        return json.loads(row[0]) if row else None

    def save_setting(self, name: str, value: Any) -> None:
        """Persist a setting (JSON) durably."""
        with self._lock, transaction(self._db):
            self._db.execute(
                "INSERT INTO settings (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [name, json.dumps(value, sort_keys=True)],
            )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
