"""Moves reports from the outbox to the broker, a bounded window at a time.

At most ``max_inflight`` reports are unacknowledged at once (MQTT packet ids
are 16-bit: a larger burst loses data silently, docs/pitfalls.md #1).

After every (re)connection the outbox splits in two streams: the *backlog*
(reports made before the connection) and *live* reports (made since). Live
reports go first so the newest data is never starved; the backlog is
replayed in order at a bounded rate. Acknowledgements arrive on the MQTT
thread; they are queued and applied to the outbox here, many per transaction.

With a ``Confirmation`` the broker's PUBACK is not the end: the report stays
until the cloud confirms it committed it (``confirmed``), and one that waits
too long is published again, sharing the backlog's rate; so is, at once, one that
a previous run left unconfirmed. Without one, the
PUBACK removes the report.
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from roadsense.core.errors import PayloadError
from roadsense.core.publisher import Publisher
from roadsense.core.timeutil import now_ms
from roadsense.edge.outbox import Outbox, OutboxRow
from roadsense.proto.acks import decode_delivery_ack

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Confirmation:
    """Reports wait for the cloud's confirmation; unconfirmed ones are published again."""

    timeout_s: float
    max_timeout_s: float


class _Stream(enum.Enum):
    LIVE = "live"
    BACKLOG = "backlog"
    RESEND = "resend"


class Forwarder:
    """Drains the outbox into a Publisher on its own thread."""

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        max_inflight: int,
        replay_rate_per_s: float,
        confirmation: Confirmation | None = None,
    ) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._max_inflight = max_inflight
        self._replay_rate = replay_rate_per_s
        self._confirmation = confirmation
        self._lock = threading.Lock()
        self._inflight: set[int] = set()
        self._acked: list[int] = []
        self._failed: list[int] = []
        self._confirmed_ranges: list[tuple[int, int]] = []
        self._acknowledged = 0
        self._confirmed = 0
        self._resent = 0
        self._epoch_pending = True
        self._first_epoch = True
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
        """Publications the broker acknowledged since this forwarder started."""
        with self._lock:
            return self._acknowledged

    @property
    def confirmed(self) -> int:
        """Reports the cloud confirmed since this forwarder started."""
        with self._lock:
            return self._confirmed

    @property
    def resent(self) -> int:
        """Reports published again for want of the cloud's confirmation."""
        with self._lock:
            return self._resent

    def confirm(self, ranges: Sequence[tuple[int, int]]) -> None:
        """The cloud committed these reports (from the MQTT thread): remove them soon."""
        with self._lock:
            self._confirmed_ranges.extend(ranges)
        self._wake.set()

    def on_delivery_ack(self, device_id: str, topic: str, payload: bytes) -> None:
        """A DeliveryAck for ``device_id`` arrived (MQTT thread); one that is not is ignored."""
        try:
            ranges = decode_delivery_ack(payload, device_id)
        except PayloadError as err:
            logger.warning("ignored a delivery confirmation on %s: %s", topic, err)
            return
        self.confirm(ranges)

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
            confirmed, self._confirmed_ranges = self._confirmed_ranges, []
            self._inflight.difference_update(self._failed)
            self._failed = []
        if acked:
            if self._confirmation is None:
                self._outbox.acknowledge_many(acked)
            else:
                self._outbox.mark_published(
                    acked,
                    now_ms(),
                    int(self._confirmation.timeout_s * 1000),
                    int(self._confirmation.max_timeout_s * 1000),
                )
            with self._lock:
                self._inflight.difference_update(acked)
                self._acknowledged += len(acked)
        if confirmed:
            removed = self._outbox.confirm(confirmed)
            with self._lock:
                self._confirmed += removed

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
        if self._confirmation is not None:
            # The broker may have come back without what it acknowledged before. On the
            # first connection of this process, the last one may have died between taking
            # the cloud's confirmation off the wire and applying it: what still awaits one
            # is published again at once (the cloud confirms a repeat and stores it once).
            wait_ms = 0 if self._first_epoch else int(self._confirmation.timeout_s * 1000)
            self._outbox.resend_unconfirmed_by(now_ms() + wait_ms)
        self._first_epoch = False
        with self._lock:
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
        if not self._publish(live, _Stream.LIVE):
            return
        room -= len(live)
        budget = min(room, self._replay_budget())
        if budget > 0:
            backlog = self._outbox.pending(backlog_cursor, budget, before=live_from)
            if not self._publish(backlog, _Stream.BACKLOG):
                return
            sent = len(backlog)
            if self._confirmation is not None and sent < budget:
                sent += self._resend(budget - sent)
            if sent == budget:
                self._wake.set()  # more backlog waits for tokens

    def _resend(self, budget: int) -> int:
        with self._lock:
            inflight = set(self._inflight)
        rows = self._outbox.due_for_resend(now_ms(), budget + len(inflight))
        due = [row for row in rows if row.seq not in inflight][:budget]
        if not due:
            return 0
        logger.debug("publishing %d unconfirmed reports again (from seq %d)", len(due), due[0].seq)
        if self._publish(due, _Stream.RESEND):
            with self._lock:
                self._resent += len(due)
        return len(due)

    def _replay_budget(self) -> int:
        now = time.monotonic()
        with self._lock:
            self._tokens = min(
                self._tokens + (now - self._tokens_at) * self._replay_rate,
                max(1.0, self._replay_rate),
            )
            self._tokens_at = now
            return int(self._tokens)

    def _publish(self, rows: list[OutboxRow], stream: _Stream) -> bool:
        for row in rows:
            with self._lock:
                if row.seq in self._inflight:
                    # paho resends its own unacknowledged messages after a reconnect.
                    self._advance(row.seq, stream)
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
                self._advance(row.seq, stream)
                if stream is not _Stream.LIVE:
                    self._tokens -= 1
        return True

    def _advance(self, seq: int, stream: _Stream) -> None:
        if stream is _Stream.BACKLOG:
            self._backlog_cursor = seq
        elif stream is _Stream.LIVE:
            self._live_cursor = seq
