"""Moves reports from the outbox to the broker, a bounded window at a time.

At most ``max_inflight`` reports are unacknowledged at once (MQTT packet ids
are 16-bit: a larger burst loses data silently, shared/PITFALLS.md #1).

After every (re)connection the outbox splits in two streams: the *backlog*
(reports made before the connection) and *live* reports (made since). Live
reports go first so the newest data is never starved; the backlog is
replayed in order at a bounded rate. Acknowledgements arrive on the MQTT
thread; they are queued and removed from the outbox here, many per
transaction.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

from roadsense.core.publisher import Publisher
from roadsense.edge.outbox import Outbox, OutboxRow

logger = logging.getLogger(__name__)


class Forwarder:
    """Drains the outbox into a Publisher on its own thread."""

    def __init__(
        self, outbox: Outbox, publisher: Publisher, max_inflight: int, replay_rate_per_s: float
    ) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._max_inflight = max_inflight
        self._replay_rate = replay_rate_per_s
        self._lock = threading.Lock()
        self._inflight: set[int] = set()
        self._acked: list[int] = []
        self._failed: list[int] = []
        self._acknowledged = 0
        self._epoch_pending = True
        self._live_from = 1
        self._live_cursor = 0
        self._backlog_cursor = 0
        self._tokens = 0.0
        self._tokens_at = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forwarder", daemon=True)

    @property
    def acknowledged(self) -> int:
        """Reports acknowledged by the broker since this forwarder started."""
        with self._lock:
            return self._acknowledged

    def inflight(self) -> int:
        """Reports published and not yet acknowledged."""
        with self._lock:
            return len(self._inflight)

    def notify(self) -> None:
        """Something changed: a new report, an acknowledgement."""
        self._wake.set()

    def connected(self) -> None:
        """A (re)connection: split backlog and live reports afresh."""
        with self._lock:
            self._epoch_pending = True
        self._wake.set()

    def start(self) -> None:
        """Start the forwarding thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop forwarding; unacknowledged reports stay in the outbox."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self._apply_acks()

    def _on_ack(self, seq: int) -> None:
        with self._lock:
            self._acked.append(seq)
        self._wake.set()

    def _on_fail(self, seq: int) -> None:
        # Kept in the outbox; the next connection's backlog scan sends it again.
        with self._lock:
            self._failed.append(seq)
        self._wake.set()

    def _apply_acks(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
            self._inflight.difference_update(self._failed)
            self._failed = []
        if not acked:
            return
        self._outbox.acknowledge_many(acked)
        with self._lock:
            self._inflight.difference_update(acked)
            self._acknowledged += len(acked)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            self._apply_acks()
            if self._publisher.is_connected():
                self._send()

    def _start_epoch(self) -> None:
        live_from = self._outbox.next_seq()
        with self._lock:
            if not self._epoch_pending:
                return
            self._epoch_pending = False
            self._live_from = live_from
            self._live_cursor = live_from - 1
            self._backlog_cursor = 0
            self._tokens = 0.0
            self._tokens_at = time.monotonic()

    def _send(self) -> None:
        self._start_epoch()
        with self._lock:
            room = self._max_inflight - len(self._inflight)
            live_cursor, backlog_cursor, live_from = (
                self._live_cursor,
                self._backlog_cursor,
                self._live_from,
            )
        if room <= 0:
            return
        live = self._outbox.pending(live_cursor, room)
        if not self._publish(live, backlog=False):
            return
        room -= len(live)
        budget = min(room, self._replay_budget())
        if budget > 0:
            backlog = self._outbox.pending(backlog_cursor, budget, before=live_from)
            self._publish(backlog, backlog=True)
            if len(backlog) == budget:
                self._wake.set()  # more backlog waits for tokens

    def _replay_budget(self) -> int:
        now = time.monotonic()
        with self._lock:
            self._tokens = min(
                self._tokens + (now - self._tokens_at) * self._replay_rate,
                max(1.0, self._replay_rate),
            )
            self._tokens_at = now
            return int(self._tokens)

    def _publish(self, rows: list[OutboxRow], *, backlog: bool) -> bool:
        for row in rows:
            with self._lock:
                if row.seq in self._inflight:
                    # paho resends its own unacknowledged messages after a reconnect.
                    self._advance(row.seq, backlog=backlog)
                    continue
                self._inflight.add(row.seq)
            accepted = self._publisher.publish(
                row.topic,
                row.payload,
                qos=1,
                on_ack=functools.partial(self._on_ack, row.seq),
                on_fail=functools.partial(self._on_fail, row.seq),
            )
            with self._lock:
                if not accepted:
                    self._inflight.discard(row.seq)
                    return False
                self._advance(row.seq, backlog=backlog)
                if backlog:
                    self._tokens -= 1
        return True

    def _advance(self, seq: int, *, backlog: bool) -> None:
        if backlog:
            self._backlog_cursor = seq
        else:
            self._live_cursor = seq
