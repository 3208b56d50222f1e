"""One handle on either store backend, so the store tests run unchanged against both."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from roadsense.cloud.config import StoreConfig
from roadsense.cloud.store.interface import Store
from roadsense.cloud.store.open import open_store


@dataclass(frozen=True)
class StoreTarget:
    """A fresh, empty database of one backend: open stores on it, read its rows directly."""

    kind: str
    """"sqlite" or "postgresql"."""
    config: StoreConfig

    def open(self, history_interval_ms: int = 60_000) -> Store:
        """A store on this database (migrated on first open)."""
        return open_store(self.config, history_interval_ms)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of a query run on the database itself, not through the store."""
        if self.config.postgres_url is None:
            with sqlite3.connect(self.config.path) as db:
                return [tuple(r) for r in db.execute(sql, params)]
        with psycopg.connect(self.config.postgres_url) as conn:
            return conn.execute(sql, params).fetchall()


def sqlite_target(folder: Path) -> StoreTarget:
    """A store target on a new SQLite file in ``folder``."""
    return StoreTarget("sqlite", StoreConfig(path=folder / "city.sqlite"))


def postgres_target(url: str) -> StoreTarget:
    """A store target on the (empty) PostgreSQL database at ``url``."""
    return StoreTarget("postgresql", StoreConfig(url=url))
