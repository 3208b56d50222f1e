"""Sessions on a store's database: what each wing's rows are written against.

A backend (``SqliteStore``, ``PostgresStore``) supplies sessions on its connection: a read,
or one write transaction. Each wing's ``rows.py`` implements its part of the store on
``Sessions`` in statements both engines run, and ``SqlStore`` puts the parts together.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractContextManager
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
