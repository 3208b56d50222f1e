"""SQLite databases opened the same way everywhere, with ordered migrations."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from roadsense.core.timeutil import now_ms

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One named schema change; migrations run once each, in list order."""

    name: str
    apply: Callable[[sqlite_utils.Database], None]


def open_database(path: str | Path, synchronous: str = "NORMAL") -> sqlite_utils.Database:
    """Open (creating) a SQLite file in WAL mode, usable from several threads.

    Callers serialise access with their own lock; WAL with synchronous=NORMAL
    survives a process crash at any moment (a power cut may lose the last
    transactions, synchronous=FULL closes that too).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=5000")
    return db


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """One explicit write transaction: committed on success, rolled back on error.

    sqlite-utils' ``insert_all`` commits per batch on its own (docs/pitfalls.md
    #5); writes inside this block use plain ``execute``/``executemany``.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def migrate(db: sqlite_utils.Database, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet recorded in ``_migrations``; return their names."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ms INTEGER)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for migration in migrations:
        if migration.name in done:
            continue
        with transaction(db):
            migration.apply(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_ms) VALUES (?, ?)",
                [migration.name, now_ms()],
            )
        logger.info("applied migration %s to %s", migration.name, db.conn)
        applied.append(migration.name)
    return applied
