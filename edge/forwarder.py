"""Moves reports from the outbox to the broker, a bounded window at a time.

The forwarder keeps at most ``max_inflight`` reports unacknowledged (MQTT
packet ids are 16-bit: a larger burst loses data silently, shared/PITFALLS.md
#1). Acknowledgements arrive on the MQTT thread; they are queued and removed
from the outbox here, many per transaction.
"""

from __future__ import annotations

import functools
import logging
import threading

from roadsense.core.publisher import Publisher
from roadsense.edge.outbox import Outbox

logger = logging.getLogger(__name__)


class Forwarder:
    """Drains the outbox into a Publisher on its own thread."""

    def __init__(self, outbox: Outbox, publisher: Publisher, max_inflight: int) -> None:
        self._outbox = outbox
        self._publisher = publisher
        self._max_inflight = max_inflight
        self._lock = threading.Lock()
        self._inflight: set[int] = set()
        self._acked: list[int] = []
        self._last_sent = 0
        self._acknowledged = 0
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
        """Something changed: a new report, an acknowledgement, a connection."""
        self._wake.set()

    def start(self) -> None:
        """Start the forwarding thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop forwarding; unacknowledged reports stay in the outbox."""
        self._stop.set()
        self._wake.set()
        self._thread.join(5.0)
        self._apply_acks()

    def _on_ack(self, seq: int) -> None:
        with self._lock:
            self._acked.append(seq)
        self._wake.set()

    def _apply_acks(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
        if not acked:
            return
        self._outbox.acknowledge_many(acked)
        with self._lock:
            self._inflight.difference_update(acked)
            self._acknowledged += len(acked)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            self._apply_acks()
            if self._publisher.is_connected():
                self._send_window()

    def _send_window(self) -> None:
        with self._lock:
            room = self._max_inflight - len(self._inflight)
            after = self._last_sent
        if room <= 0:
            return
        for row in self._outbox.pending_after(after, room):
            with self._lock:
                self._inflight.add(row.seq)
                self._last_sent = row.seq
            accepted = self._publisher.publish(
                row.topic, row.payload, qos=1, on_ack=functools.partial(self._on_ack, row.seq)
            )
            if not accepted:
                with self._lock:
                    self._inflight.discard(row.seq)
                    self._last_sent = row.seq - 1
                return
