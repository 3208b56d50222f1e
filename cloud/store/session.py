"""Sessions on a store's database: what each wing's rows are written against.

A backend (``SqliteStore``, ``PostgresStore``) supplies sessions on its connection: a read,
or one write transaction. Each wing's ``rows.py`` implements its part of the store on
``Sessions`` in statements both engines run, and ``SqlStore`` puts the parts together.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

Row = tuple[Any, ...]


class SqlSession(Protocol):
    """Statements on one connection, inside a read or one write transaction."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the rows it changed."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement per row; the rows they changed."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query; its rows."""


class Sessions(abc.ABC):
    """Where a wing's rows get their sessions (a backend's connection)."""

    _unique_violation: type[Exception]
    """The engine's error for a unique index refusing a row (each backend names it)."""

    @abc.abstractmethod
    def _read(self) -> AbstractContextManager[SqlSession]:
        """A session for reads."""

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[SqlSession]:
        """A session in one write transaction: committed on success, rolled back on error."""


def greater(table: str, column: str) -> str:
    """The larger of a stored column and the value proposed for it (both engines' syntax)."""
    return (
        f"CASE WHEN excluded.{column} > {table}.{column} "
        f"THEN excluded.{column} ELSE {table}.{column} END"
    )


@dataclass(frozen=True)
class Upsert:
    """An INSERT ... ON CONFLICT of many rows, each key at most once: one statement per row
    (``per_row``), or on PostgreSQL one statement for all of them (``all_rows``)."""

    table: str
    columns: tuple[tuple[str, str], ...]
    """(name, PostgreSQL type) of each column, in the rows' order."""
    on_conflict: str

    @property
    def per_row(self) -> str:
        """The statement for one row (``?`` placeholders)."""
        marks = ", ".join("?" * len(self.columns))
        return f"INSERT INTO {self.table} ({self._names}) VALUES ({marks}) {self.on_conflict}"

    @property
    def all_rows(self) -> str:
        """The statement for all rows, one PostgreSQL array per column (binary parameters)."""
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in self.columns)
        return (
            f"INSERT INTO {self.table} ({self._names}) SELECT * FROM unnest({arrays}) "
            f"{self.on_conflict}"
        )

    @property
    def kinds(self) -> tuple[str, ...]:
        """The PostgreSQL type of each column."""
        return tuple(kind for _, kind in self.columns)

    @property
    def _names(self) -> str:
        return ", ".join(name for name, _ in self.columns)
