"""The city store on one SQLite file (WAL): the default, for one box and the demo."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from roadsense.cloud.domain import Reading
from roadsense.cloud.store.migrations import MIGRATIONS
from roadsense.cloud.store.rows import first_of_each, report_row
from roadsense.cloud.store.session import Row
from roadsense.cloud.store.sql import INSERT_REPORTS, SqlStore
from roadsense.core.sqlite import migrate, open_database, transaction

KEY_CHUNK = 400
"""(device, seq) pairs looked up per query when deduplicating a batch."""


class _Session:
    """Statements on the store's one connection (the caller holds the store's lock)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._conn.execute(sql, params).rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return int(self._conn.executemany(sql, rows).rowcount)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(row) for row in self._conn.execute(sql, params).fetchall()]


@contextmanager
def _only_migrator(path: Path) -> Iterator[None]:
    """One process at a time migrates (processes of several roles may open a new file at
    once). An flock on the folder: a second descriptor on the database file itself would
    drop SQLite's own POSIX locks when closed."""
    fd = os.open(path.resolve().parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class SqliteStore(SqlStore["_Session"]):
    """The store on one SQLite file (WAL), one connection behind a lock."""

    _unique_violation = sqlite3.IntegrityError

    def __init__(self, path: str | Path, history_interval_ms: int = 60_000) -> None:
        super().__init__(history_interval_ms)
        self._lock = threading.Lock()
        self._db = open_database(path)
        with _only_migrator(Path(path)):
            migrate(self._db, MIGRATIONS)
        self._session = _Session(self._db.conn)

    @contextmanager
    def _read(self) -> Iterator[_Session]:
        with self._lock:
            yield self._session

    @contextmanager
    def _write(self) -> Iterator[_Session]:
        with self._lock, transaction(self._db):
            yield self._session

    def data_version(self) -> int:
        """Changes when another connection (another process) commits to the file."""
        with self._lock:
            ((version,),) = self._session.rows("PRAGMA data_version")
        return int(version)

    def _insert_readings(self, db: _Session, readings: list[Reading]) -> list[Reading]:
        # One writer at a time (the file's write lock), so looking up the stored keys first
        # is safe, and faster here than an insert per row.
        existing: set[tuple[str, int]] = set()
        keys = [(r.device_id, r.seq) for r in readings]
        for start in range(0, len(keys), KEY_CHUNK):
            chunk = keys[start : start + KEY_CHUNK]
            values = ",".join("(?, ?)" for _ in chunk)
            rows = db.rows(
                f"SELECT device_id, seq FROM reports WHERE (device_id, seq) IN (VALUES {values})",
                [part for key in chunk for part in key],
            )
            existing.update((str(d), int(s)) for d, s in rows)
        fresh = first_of_each(readings, set(keys) - existing)
        db.executemany(INSERT_REPORTS, [report_row(r) for r in fresh])
        return fresh

    def close(self) -> None:
        with self._lock:
            self._db.close()
