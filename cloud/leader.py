"""Who runs the forecast job: one process at a time, another when it dies.

On PostgreSQL the leader holds a session-level advisory lock on a connection of its own
(``pg_try_advisory_lock``): the server frees it the moment that connection ends, so a killed
leader's lock is free at once, and a leader whose host vanished loses it when TCP keepalives
give up on the connection. On SQLite (one box) the lock is an ``flock`` on a file beside the
database, which the kernel frees when the holding process dies.

Whoever does not hold the lock tries again every ``lock_poll_s``: a dead leader is replaced
within that (plus the keepalive time when its host, not just its process, is gone).
"""

from __future__ import annotations

import abc
import fcntl
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

FORECAST_LOCK_KEY = 0x526F_6164_5365_6E73
"""The advisory lock's key ("RoadSens" in ASCII): one forecast leader per database."""
ROLLOUT_LOCK_KEY = 0x526F_6164_526F_6C6C
"""The rollout controller's key ("RoadRoll"): one process moves rollouts on at a time."""
KEEPALIVE: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
"""The lock connection's TCP keepalives: a holder whose host vanished loses it in ~25 s."""


class LeaderLock(abc.ABC):
    """A lock one process holds at a time; taking it never blocks."""

    @abc.abstractmethod
    def try_acquire(self) -> bool:
        """Hold the lock now (True), or learn that someone else does (False).

        When held, checks that it still is: False means it was lost (its connection broke).
        """

    @abc.abstractmethod
    def release(self) -> None:
        """Let the lock go (idempotent)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """What the lock is, for logs."""


class PostgresLeaderLock(LeaderLock):
    """``pg_try_advisory_lock`` on a dedicated autocommit connection."""

    def __init__(self, url: str, key: int = FORECAST_LOCK_KEY, timeout_s: float = 10.0) -> None:
        self._url = url
        self._key = key
        self._timeout_s = timeout_s
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False

    def describe(self) -> str:
        return f"PostgreSQL advisory lock {self._key}"

    def try_acquire(self) -> bool:
        import psycopg

        try:
            if self._conn is None:
                self._conn = psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=max(1, round(self._timeout_s)),
                    application_name=f"roadsense-forecast-lock-{os.getpid()}",
                    **KEEPALIVE,
                )
            if self._held:
                self._conn.execute("SELECT 1")  # the session, and so the lock, is still there
                return True
            ((taken,),) = self._conn.execute(
                "SELECT pg_try_advisory_lock(%s)", [self._key]
            ).fetchall()
            self._held = bool(taken)
            return self._held
        except psycopg.Error as err:
            if self._held:
                logger.warning("forecast lock lost with its connection: %s", err)
            self._drop()
            return False

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            try:
                conn.close()
            except Exception as err:  # a broken connection: nothing to close cleanly
                logger.debug("closing the lock connection: %s", err)

    def release(self) -> None:
        # Closing the session frees the lock too, but only once the server's backend has
        # ended: unlock first so that a successor can take it at once.
        if self._held and self._conn is not None:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", [self._key])
            except Exception as err:  # the session is gone, and the lock with it
                logger.debug("unlocking the forecast lock: %s", err)
        self._drop()


class FileLeaderLock(LeaderLock):
    """An exclusive ``flock`` on one file, for processes on one box (SQLite)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def describe(self) -> str:
        return f"file lock {self._path}"

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor frees the flock


class Leadership:
    """Whether this process leads a job: ``lock`` taken without blocking at each ``take``,
    each change logged once. No lock: the process is alone and always leads."""

    def __init__(self, lock: LeaderLock | None, job: str) -> None:
        self._lock = lock
        self._job = job
        self.leading = False

    @property
    def shared(self) -> bool:
        """Whether other processes may lead instead (there is a lock)."""
        return self._lock is not None

    def take(self) -> bool:
        """Lead now (taking the lock when it can), or learn that another process does."""
        leading = self._lock is None or self._lock.try_acquire()
        if self._lock is not None and leading != self.leading:
            if leading:
                logger.info("%s: this process took the %s", self._job, self._lock.describe())
            else:
                logger.warning(
                    "%s: this process no longer holds the %s", self._job, self._lock.describe()
                )
        self.leading = leading
        return leading

    def release(self) -> None:
        """Let the lock go (idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self.leading = False
