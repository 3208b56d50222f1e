"""Encoded GetCityState answers, kept per change version and shared by concurrent callers.

Building and encoding the state of a 10,000-segment city takes milliseconds; between two
changes every caller asking the same question gets the same bytes. An answer is reused only
while the city is at the version it was built from, none of its segments has turned stale
since, and it is younger than ``max_age_ms`` (its ``as_of_ms`` stays recent). Callers that
arrive while an answer is being built wait for that one instead of building their own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass

MAX_AGE_MS = 1000
"""An answer is rebuilt at least this often, changes or not."""
MAX_ENTRIES = 64
"""Distinct questions (filters) kept; the least recently asked go first."""


@dataclass(frozen=True)
class EncodedAnswer:
    """One encoded answer and how long it holds."""

    encoded: bytes
    built_ms: int
    valid_until_ms: int
    """The first moment it no longer holds (a segment in it turns stale); exclusive."""


@dataclass(frozen=True)
class _Entry:
    version: Hashable
    answer: EncodedAnswer


class EncodedStateCache:
    """Answers by question and city version, built once however many callers ask at once."""

    def __init__(self, max_age_ms: int = MAX_AGE_MS, max_entries: int = MAX_ENTRIES) -> None:
        self._max_age_ms = max_age_ms
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._building: dict[tuple[bytes, Hashable], Future[EncodedAnswer]] = {}
        self.builds = 0
        """Answers built so far (the rest were shared)."""

    def _usable(self, entry: _Entry | None, version: Hashable, now_ms: int) -> bool:
        return (
            entry is not None
            and entry.version == version
            and now_ms < entry.answer.valid_until_ms
            and now_ms - entry.answer.built_ms < self._max_age_ms
        )

    def get(
        self,
        question: bytes,
        version: Hashable,
        now_ms: int,
        build: Callable[[], EncodedAnswer],
    ) -> bytes:
        """The encoded answer to ``question`` at ``version`` (see ``answer``)."""
        return self.answer(question, version, now_ms, build).encoded

    def answer(
        self,
        question: bytes,
        version: Hashable,
        now_ms: int,
        build: Callable[[], EncodedAnswer],
    ) -> EncodedAnswer:
        """The answer to ``question`` at ``version``: kept, being built, or built now.

        An error from ``build`` reaches every caller waiting on that build; nothing is kept.
        """
        with self._lock:
            entry = self._entries.get(question)
            if entry is not None and self._usable(entry, version, now_ms):
                self._entries.move_to_end(question)
                return entry.answer
            key = (question, version)
            flight = self._building.get(key)
            leader = flight is None
            if flight is None:
                flight = Future()
                self._building[key] = flight
                self.builds += 1
        if not leader:
            return flight.result()
        try:
            answer = build()
        except BaseException as err:
            with self._lock:
                del self._building[key]
            flight.set_exception(err)
            raise
        with self._lock:
            self._entries[question] = _Entry(version, answer)
            self._entries.move_to_end(question)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            del self._building[key]
        flight.set_result(answer)
        return answer
