"""The change feed behind WatchCityState.

Each watcher has its own queue that coalesces by segment: a slow consumer
gets the latest state of each changed segment, never an ever-growing backlog,
and never slows the writer or other watchers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from roadsense.cloud.domain import SegmentSnapshot


class Watcher:
    """One subscriber's coalescing queue of changed segments."""

    def __init__(self, segment_ids: Iterable[str]) -> None:
        self._filter = set(segment_ids)
        self._changed: dict[str, SegmentSnapshot] = {}
        self._ready = threading.Condition()
        self.closed = False

    def offer(self, snapshots: Iterable[SegmentSnapshot]) -> None:
        """Queue changes (replacing older queued states of the same segment)."""
        with self._ready:
            for snapshot in snapshots:
                if not self._filter or snapshot.segment_id in self._filter:
                    self._changed[snapshot.segment_id] = snapshot
            if self._changed:
                self._ready.notify()

    def take(self, timeout_s: float) -> list[SegmentSnapshot]:
        """Wait up to ``timeout_s`` for changes; return and clear them."""
        with self._ready:
            if not self._changed and not self.closed:
                self._ready.wait(timeout_s)
            changed = list(self._changed.values())
            self._changed.clear()
            return changed

    def close(self) -> None:
        """Wake the consumer for good."""
        with self._ready:
            self.closed = True
            self._ready.notify_all()


class ChangeFeed:
    """Fans segment changes out to every watcher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: set[Watcher] = set()
        self._version = 0

    @property
    def version(self) -> int:
        """Counts the committed writes published (device counts may have changed with each)."""
        return self._version

    def subscribe(self, segment_ids: Iterable[str] = ()) -> Watcher:
        """A new watcher for the given segments (all when none named)."""
        watcher = Watcher(segment_ids)
        with self._lock:
            self._watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        """Forget a watcher."""
        with self._lock:
            self._watchers.discard(watcher)
        watcher.close()

    def publish(self, snapshots: list[SegmentSnapshot]) -> None:
        """Count a committed write and deliver its segment changes to every watcher."""
        with self._lock:
            self._version += 1
            if not snapshots:
                return
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.offer(snapshots)

    def close(self) -> None:
        """Close every watcher (shutdown)."""
        with self._lock:
            watchers = list(self._watchers)
            self._watchers.clear()
        for watcher in watchers:
            watcher.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._watchers)
