"""The city store on PostgreSQL: a server that several cloud processes share.

psycopg 3 with a connection pool; every batch is one transaction, reports are deduplicated by
the unique index on (device_id, seq) with ``ON CONFLICT DO NOTHING``, so workers writing at
the same time never store a report twice. The statements are the SQLite store's
(``roadsense.cloud.store.sql``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from roadsense.cloud.city.changes import CHANNEL, change_payload
from roadsense.cloud.domain import Reading
from roadsense.cloud.store.interface import BatchResult
from roadsense.cloud.store.open import redacted
from roadsense.cloud.store.postgres_migrations import POSTGRES_MIGRATIONS, migrate_postgres
from roadsense.cloud.store.rows import first_of_each, report_row
from roadsense.cloud.store.session import Row, Upsert
from roadsense.cloud.store.sql import REPORT_COLUMNS, SqlStore
from roadsense.core.errors import StoreError

logger = logging.getLogger(__name__)

# Each column of the batch as one array: one statement inserts the whole batch.
REPORT_KINDS = (
    "text", "bigint", "text", "text", "bigint", "bigint", "bigint", "text", "text", "text",
    "bigint", "float8",
)  # fmt: skip
INSERT_NEW_REPORTS = f"""INSERT INTO reports ({REPORT_COLUMNS})
   SELECT * FROM unnest({", ".join(f"%b::{kind}[]" for kind in REPORT_KINDS)})
   ON CONFLICT (device_id, seq) DO NOTHING RETURNING device_id, seq"""
_AS_KIND: dict[str, Callable[[Any], Any]] = {"bigint": int, "integer": int, "float8": float}


def arrays(rows: Sequence[Row], kinds: Sequence[str]) -> list[list[Any]]:
    """Each column of ``rows`` as one list, ready to be sent as a binary array of its kind.

    Binary arrays cost half what text ones do to build (psycopg escapes every element of a
    text array in Python), but they take one Python type per list: an int in a float8
    column, or a bool in an integer one, is converted here rather than refused there.
    """
    columns = [list(column) for column in zip(*rows, strict=True)]
    for column, kind in zip(columns, kinds, strict=True):
        convert = _AS_KIND.get(kind)
        if convert is not None:
            column[:] = [None if v is None else convert(v) for v in column]
    return columns


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    # The shared statements use "?"; psycopg wants "%s" (none of them holds a "%" or "?").
    return sql.replace("?", "%s")


class _Session:
    """Statements on one pooled connection."""

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._conn.cursor() as cur:
            cur.execute(_placeholders(sql), params)
            return cur.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        with self._conn.cursor() as cur:
            cur.executemany(_placeholders(sql), rows)
            return cur.rowcount

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._conn.cursor() as cur:
            cur.execute(_placeholders(sql), params)
            return cur.fetchall()

    def insert_reports(self, rows: list[Row]) -> set[tuple[str, int]]:
        """Insert report rows, skipping stored keys; the keys it stored."""
        with self._conn.cursor() as cur:
            cur.execute(INSERT_NEW_REPORTS, arrays(rows, REPORT_KINDS))
            return {(str(d), int(s)) for d, s in cur.fetchall()}


def inspect_postgres(url: str, timeout_s: float = 5.0) -> tuple[set[str], int | None]:
    """(applied migrations, reports stored or None before the first) without changing anything."""
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(timeout_s))) as conn:
            conn.read_only = True
            known = conn.execute("SELECT to_regclass('_migrations'), to_regclass('reports')")
            migrations_table, reports_table = known.fetchall()[0]
            if migrations_table is None:
                return set(), None
            applied = {str(r[0]) for r in conn.execute("SELECT name FROM _migrations")}
            if reports_table is None:
                return applied, None
            ((reports,),) = conn.execute("SELECT COUNT(*) FROM reports").fetchall()
            return applied, int(reports)
    except psycopg.Error as err:
        raise StoreError(f"PostgreSQL store {redacted(url)}: {_one_line(err)}") from err


class PostgresStore(SqlStore["_Session"]):
    """The store on a PostgreSQL database, through a pool of connections."""

    _unique_violation = psycopg.errors.UniqueViolation

    def __init__(
        self,
        url: str,
        history_interval_ms: int = 60_000,
        pool_size: int = 8,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(history_interval_ms)
        self.url = redacted(url)
        try:
            # One direct connection first: its error says why (the pool's only "timed out").
            with psycopg.connect(url, connect_timeout=max(1, round(timeout_s))) as conn:
                migrate_postgres(conn, POSTGRES_MIGRATIONS)
                ((synchronous,),) = conn.execute("SHOW synchronous_commit").fetchall()
        except psycopg.Error as err:
            raise StoreError(
                f"cannot open the PostgreSQL store {self.url}: {_one_line(err)}"
            ) from err
        if synchronous == "off":
            # The ingest acknowledges a batch to the broker once it is committed.
            logger.warning(
                "PostgreSQL store %s: synchronous_commit is off, so a server crash can lose "
                "batches the broker was already told were stored",
                self.url,
            )
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            timeout=timeout_s,
            open=False,
            name="roadsense-store",
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except PoolTimeout as err:
            self._pool.close()
            raise StoreError(
                f"PostgreSQL store {self.url}: no connection within {timeout_s} s"
            ) from err

    @contextmanager
    def _read(self) -> Iterator[_Session]:
        with self._reachable(), self._pool.connection() as conn:
            yield _Session(conn)

    @contextmanager
    def _write(self) -> Iterator[_Session]:
        with self._reachable(), self._pool.connection() as conn, conn.transaction():
            yield _Session(conn)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """A server away (no connection, or one lost) is a ``StoreError``; SQL errors stay."""
        try:
            yield
        except PoolTimeout as err:
            raise StoreError(f"PostgreSQL store {self.url}: no connection ({err})") from err
        except psycopg.OperationalError as err:
            raise StoreError(f"PostgreSQL store {self.url}: {_one_line(err)}") from err

    def _upsert(self, db: _Session, upsert: Upsert, rows: list[Row]) -> None:
        # One statement for the batch (a round trip and a plan per row cost more than the rows).
        if rows:
            db.execute(upsert.all_rows, arrays(rows, upsert.kinds))

    def _lock_segments(self, db: _Session, segment_ids: list[str]) -> None:
        # Until commit; in key order, so two writers never wait on each other in a cycle.
        # The two-key form keeps these apart from the forecast lock's one-key space.
        db.execute(
            "SELECT pg_advisory_xact_lock(1, key) FROM (SELECT hashtext(id) AS key "
            "FROM unnest(%b::text[]) AS id ORDER BY key) AS keys",
            [segment_ids],
        )

    def _announce(self, db: _Session, result: BatchResult) -> None:
        # Inside the batch's transaction: PostgreSQL delivers it on commit, and only then.
        db.execute(
            "SELECT pg_notify(?, ?)",
            [CHANNEL, change_payload(s.segment_id for s in result.segments)],
        )

    def _among(self, ids: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        # One array for all of them: psycopg parses a statement of hundreds of placeholders
        # anew each time (it caches only short ones) and dumps each id on its own.
        yield "= ANY(%b::text[])", [list(ids)]

    def _insert_readings(self, db: _Session, readings: list[Reading]) -> list[Reading]:
        return first_of_each(readings, db.insert_reports([report_row(r) for r in readings]))

    def close(self) -> None:
        self._pool.close()
