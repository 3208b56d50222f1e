"""The durable outbox: every report is in SQLite before it is published.

A report gets its per-device sequence number in the same transaction that
stores it, so a crash can neither lose a stored report nor reuse a number.
A row leaves only when the broker acknowledged it (QoS 1 PUBACK) or when a
bound (rows, bytes, age) forces the oldest out; those drops are counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlite_utils import Database

from roadsense.core.sqlite import Migration, migrate, open_database, transaction
from roadsense.core.timeutil import now_ms
from roadsense.edge.config import OutboxConfig

logger = logging.getLogger(__name__)


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


MIGRATIONS = [Migration("0001_outbox", _create_tables)]


@dataclass(frozen=True)
class OutboxRow:
    """A stored report waiting for its acknowledgement."""

    seq: int
    topic: str
    payload: bytes


class Outbox:
    """SQLite-backed, bounded, ack-driven queue of outgoing reports."""

    def __init__(self, config: OutboxConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._db = open_database(config.path)
        migrate(self._db, MIGRATIONS)

    def append(self, topic: str, build_payload: Callable[[int], bytes]) -> int:
        """Store a report; ``build_payload(seq)`` serialises it with its sequence number."""
        created = now_ms()
        with self._lock, transaction(self._db):
            seq = self._counter("next_seq")
            payload = build_payload(seq)
            self._db.execute(
                "INSERT INTO outbox (seq, topic, payload, created_ms) VALUES (?, ?, ?, ?)",
                [seq, topic, payload, created],
            )
            self._db.execute("UPDATE counters SET value = ? WHERE name = 'next_seq'", [seq + 1])
            dropped = self._enforce_bounds(created)
        if dropped:
            logger.warning("outbox full: dropped %d oldest reports", dropped)
        return seq

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
            rows = self._db.execute(
                "SELECT seq, LENGTH(payload) FROM outbox ORDER BY seq"
            ).fetchall()
            excess = size - cfg.max_bytes
            cut = []
            for seq, length in rows:
                if excess <= 0:
                    break
                cut.append(seq)
                excess -= length
            dropped += self._db.execute(
                f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(cut))})", cut
            ).rowcount
        if dropped:
            self._db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'dropped'", [dropped]
            )
        return dropped

    def pending_after(self, seq: int, limit: int) -> list[OutboxRow]:
        """Stored reports with a sequence number above ``seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                [seq, limit],
            ).fetchall()
        return [OutboxRow(int(s), str(t), bytes(p)) for s, t, p in rows]

    def acknowledge_many(self, seqs: list[int]) -> None:
        """The broker has these reports: remove them in one transaction."""
        with self._lock, transaction(self._db):
            removed = self._db.conn.executemany(
                "DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs]
            ).rowcount
            self._db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'acknowledged'", [removed]
            )

    def pending_count(self) -> int:
        """Reports stored and not yet acknowledged."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def dropped_count(self) -> int:
        """Reports dropped by the bounds since the outbox was created."""
        with self._lock:
            return self._counter("dropped")

    def acknowledged_count(self) -> int:
        """Reports acknowledged by the broker since the outbox was created."""
        with self._lock:
            return self._counter("acknowledged")

    def next_seq(self) -> int:
        """The sequence number the next report will get."""
        with self._lock:
            return self._counter("next_seq")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
