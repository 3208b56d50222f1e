"""Changes committed by any ingest worker, heard by every API replica: PostgreSQL LISTEN/NOTIFY.

The PostgreSQL store sends one ``NOTIFY roadsense_changes`` inside each batch's transaction,
so the notification goes out only when that batch commits, and never for one rolled back.
Its payload names the segments whose state the batch changed. Each API replica listens on a
connection of its own (autocommit), reads those segments' stored rows, puts them into its
city state and publishes them on its change feed: WatchCityState, the dashboard's live view
and the GetCityState cache (keyed on the tracker's and the feed's versions) all follow.

Notifications sent while a replica was not listening are lost, so after each (re)connection
the replica reloads every segment once. While it cannot reach the server it says so
(``on_store_state(False)``) and serves the state it has.

SQLite has no notifications: processes on one box sharing one file poll its
``PRAGMA data_version`` instead (``DataVersionPoller``).
"""

from __future__ import annotations

import abc
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.city.watch import ChangeFeed
from roadsense.cloud.domain import SegmentSnapshot
from roadsense.cloud.leader import KEEPALIVE
from roadsense.cloud.store.interface import CityStore
from roadsense.cloud.store.sqlite import SqliteStore

logger = logging.getLogger(__name__)

CHANNEL = "roadsense_changes"
MAX_PAYLOAD_BYTES = 7900
"""PostgreSQL refuses NOTIFY payloads of 8000 bytes or more: past this, "reload all"."""
RECONNECT_S = 1.0
WAIT_S = 0.5
POLL_S = 0.5
"""How often an API process on a SQLite store looks for other processes' commits."""
"""How long the listener waits for a notification before it checks for stop."""


def change_payload(segment_ids: Iterable[str]) -> str:
    """The NOTIFY payload of one committed batch: its changed segments, or all (``null``)."""
    payload = json.dumps({"segments": sorted(set(segment_ids))}, separators=(",", ":"))
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        return '{"segments":null}'
    return payload


def changed_segments(payload: str) -> set[str] | None:
    """The segments a payload names; None for "reload every segment" (or one not understood)."""
    try:
        segments = json.loads(payload)["segments"]
    except (ValueError, KeyError, TypeError):
        logger.warning("change notification not understood: %.200s", payload)
        return None
    if not isinstance(segments, list):
        return None
    return {str(s) for s in segments}


class _StateFollower(abc.ABC):
    """Puts segment states other processes stored into this process's city state and feed."""

    def __init__(
        self,
        store: CityStore,
        tracker: CityTracker,
        feed: ChangeFeed,
        on_store_state: Callable[[bool], None] | None = None,
    ) -> None:
        self._store = store
        self._tracker = tracker
        self._feed = feed
        self._on_store_state = on_store_state
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="change-listener", daemon=True)
        self.notifications = 0
        """Notifications heard so far."""
        self.reloads = 0
        """Full reloads (one per connection)."""

    def start(self) -> None:
        """Listen in the background until stop()."""
        self._thread.start()

    def wait_listening(self, timeout_s: float) -> bool:
        """Block until the listener is connected and caught up."""
        return self._listening.wait(timeout_s)

    def stop(self) -> None:
        """Stop listening."""
        self._stop.set()
        self._thread.join(timeout=5)

    @abc.abstractmethod
    def _run(self) -> None:
        """Follow until stop() (the thread's body)."""

    def _apply(self, segment_ids: set[str] | None) -> None:
        """Read the named segments (None: all) and publish the ones that changed."""
        if segment_ids is None:
            stored = self._store.segments()
        elif segment_ids:
            stored = self._store.segments(sorted(segment_ids))
        else:
            stored = []
        changed: list[SegmentSnapshot] = self._tracker.replace(stored)
        # Published even when empty: a batch of statuses changes the devices the API counts.
        self._feed.publish(changed)

    def _set_state(self, available: bool) -> None:
        if self._on_store_state is not None:
            self._on_store_state(available)


class ChangeListener(_StateFollower):
    """Follows the PostgreSQL store's change notifications (LISTEN on its own connection)."""

    def __init__(
        self,
        url: str,
        store: CityStore,
        tracker: CityTracker,
        feed: ChangeFeed,
        on_store_state: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__(store, tracker, feed, on_store_state)
        self._url = url

    def _run(self) -> None:
        import psycopg

        away = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=5,
                    application_name="roadsense-change-listener",
                    **KEEPALIVE,
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._apply(None)  # whatever committed while nobody listened
                    self.reloads += 1
                    if away:
                        logger.warning("change listener: the store is back")
                        away = False
                    self._set_state(True)
                    self._listening.set()
                    self._listen(conn)
            except Exception as err:  # server away or restarting: catch up after reconnecting
                self._listening.clear()
                if not away:
                    logger.warning("change listener: lost the store (%s); reconnecting", err)
                    away = True
                    self._set_state(False)
                self._stop.wait(RECONNECT_S)

    def _listen(self, conn: Any) -> None:
        while not self._stop.is_set():
            first = list(conn.notifies(timeout=WAIT_S, stop_after=1))
            if not first:
                continue
            # Take whatever else is queued already: one read for a burst of commits.
            notes = first + list(conn.notifies(timeout=0.005, stop_after=1000))
            self.notifications += len(notes)
            wanted: set[str] | None = set()
            for note in notes:
                named = changed_segments(note.payload)
                if named is None or wanted is None:
                    wanted = None
                else:
                    wanted |= named
            self._apply(wanted)


class DataVersionPoller(_StateFollower):
    """Follows another process's commits to one SQLite file (``PRAGMA data_version``).

    SQLite sends no notifications; an API process on the same box as an ingest process
    asks every ``every_s`` whether anyone else committed, and then reloads every segment.
    """

    def __init__(
        self,
        store: SqliteStore,
        tracker: CityTracker,
        feed: ChangeFeed,
        every_s: float = POLL_S,
    ) -> None:
        super().__init__(store, tracker, feed)
        self._sqlite = store
        self._every_s = every_s

    def _run(self) -> None:
        seen = self._sqlite.data_version()
        self._listening.set()
        while not self._stop.wait(self._every_s):
            try:
                version = self._sqlite.data_version()
                if version != seen:
                    seen = version
                    self.notifications += 1
                    self._apply(None)
            except Exception as err:  # a locked or vanished file: try again next time
                logger.warning("change poller: cannot read the store (%s)", err)
