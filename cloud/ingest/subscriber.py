"""Telemetry ingest: MQTT shared subscription → bounded queue → batched writes.

The MQTT thread only enqueues. A writer thread decodes, validates and stores
batches in one transaction each, then acknowledges the messages (manual
PUBACK), so the broker keeps any message the store has not committed: a crash
between receipt and commit loses nothing. After each commit every device in
the batch gets a DeliveryAck naming the reports now committed (stored,
duplicates of stored ones, dead letters), so its outbox can let them go: the
broker is not the last hop, and a broker that loses its state loses nothing.
When the queue is full the MQTT thread waits, which pushes back to the
broker; every wait is counted.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from google.protobuf.message import DecodeError
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.city.watch import ChangeFeed
from roadsense.cloud.config import CloudConfig
from roadsense.cloud.domain import Reading, Rejected, Telemetry
from roadsense.cloud.ingest.decode import decode_message
from roadsense.cloud.store.interface import Store
from roadsense.core.paho_client import connect_async, create_client, guarded_callback, set_nodelay
from roadsense.core.timeutil import now_ms
from roadsense.proto.acks import encode_delivery_ack, seq_ranges
from roadsense.proto.topics import TopicKind, ack_topic, parse_topic, telemetry_subscriptions
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0
MAX_RETRY_DELAY_S = 5.0
"""A failed write is retried after 1 s, then twice as long each time up to this."""


@dataclass(frozen=True)
class _Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ms: int


@dataclass
class IngestStats:
    """Counters of the ingest since start."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: int = 0
    health: int = 0
    batches: int = 0
    backpressure_waits: int = 0
    write_failures: int = 0
    confirmations: int = 0


class IngestCounters(Protocol):
    """What shows the ingest's counters (the dashboard's ingest panel)."""

    def stats(self) -> IngestStats:
        """A copy of the counters."""


class NoIngest:
    """The counters of a process that runs no ingest (an API replica): all zero."""

    def stats(self) -> IngestStats:
        """Zero counters."""
        return IngestStats()


class IngestWorker:
    """Subscribes to the fleet's telemetry and writes it to the store."""

    def __init__(
        self,
        config: CloudConfig,
        store: Store,
        tracker: CityTracker,
        feed: ChangeFeed,
        lag_observer: Callable[[float], None] | None = None,
        *,
        store_state: Callable[[bool], None] | None = None,
        shares_store: bool = False,
    ) -> None:
        """``store_state`` hears False when a write fails and True when writes work again;
        ``shares_store``: other ingest processes write to the same store."""
        self._lag_observer = lag_observer
        self._store_state = store_state
        self._config = config
        self._known_devices = config.known_devices()
        self._camera_segments = config.camera_segments()
        self._revoked: frozenset[str] = frozenset()
        self._store = store
        self._tracker = tracker
        # A store with other writers: fuse segments from what all of them stored.
        self._shared = tracker if shares_store else None
        self._feed = feed
        self._queue: queue.Queue[_Incoming] = queue.Queue(maxsize=config.ingest.queue_size)
        self._stats = IngestStats()
        self._stats_lock = threading.Lock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._closing = False
        self._client = create_client(
            config.mqtt, config.ingest.client_id, config.ingest.username, manual_ack=True
        )
        self._client.on_connect = guarded_callback(self._on_connect)
        self._client.on_disconnect = guarded_callback(self._on_disconnect)
        self._client.on_message = guarded_callback(self._on_message)
        self._client.on_subscribe = guarded_callback(self._on_subscribe)
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)

    def stats(self) -> IngestStats:
        """A copy of the counters."""
        with self._stats_lock:
            return IngestStats(**vars(self._stats))

    def queue_depth(self) -> int:
        """Messages waiting for the writer."""
        return self._queue.qsize()

    def is_connected(self) -> bool:
        """True once the broker granted the telemetry subscriptions (SUBACK)."""
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected or the timeout passes."""
        return self._connected.wait(timeout_s)

    def start(self) -> None:
        """Start the writer and connect to the broker."""
        self._writer.start()
        connect_async(self._client, self._config.mqtt)

    def stop(self) -> None:
        """Disconnect, then write what is queued."""
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
        self._stop.set()
        self._writer.join(10.0)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.warning("ingest: broker refused the connection: %s", reason_code)
            return
        set_nodelay(client)
        group = self._config.ingest.shared_group or None
        # Subscribe on every connect: the broker may have lost the session.
        client.subscribe([(f, 1) for f in telemetry_subscriptions(group)])
        logger.info(
            "ingest connected to %s:%d (session present: %s)",
            self._config.mqtt.host,
            self._config.mqtt.port,
            flags.session_present,
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            logger.error("ingest: broker refused telemetry subscriptions: %s", ", ".join(refused))
            return
        # Only now does the broker route telemetry to us: "connected" means ready.
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connected.is_set() and not self._closing:
            logger.warning("ingest disconnected: %s", reason_code)
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        incoming = _Incoming(
            message.topic, bytes(message.payload), message.mid, message.qos, now_ms()
        )
        try:
            self._queue.put_nowait(incoming)
        except queue.Full:
            with self._stats_lock:
                self._stats.backpressure_waits += 1
            self._queue.put(incoming)

    def _write_loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            batch = [first]
            while len(batch) < self._config.ingest.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[_Incoming]) -> None:
        max_future_ms = int(self._config.ingest.max_future_skew_s * 1000)
        max_bytes = self._config.ingest.max_payload_bytes
        # One small query per batch: revocations by another process count at once.
        try:
            self._revoked = self._store.revoked_devices()
        except Exception as err:  # the write below retries; keep the last known set
            logger.warning("ingest: cannot read revoked devices (%s); using the last known", err)
        revoked = self._revoked
        records: list[Telemetry] = [
            decode_message(
                m.topic,
                m.payload,
                m.received_ms,
                max_future_ms,
                max_bytes,
                max_late_ms=int(self._config.ingest.max_late_s * 1000),
                known_devices=self._known_devices,
                camera_segments=self._camera_segments,
                revoked_devices=revoked,
            )
            for m in batch
        ]
        for record in records:
            if isinstance(record, Rejected):
                logger.warning("ingest rejected a message on %s: %s", record.topic, record.reason)
        failures = 0
        while True:
            try:
                result = self._store.write_batch(records, self._tracker.apply, self._shared)
                break
            except Exception as err:
                # Not acknowledged, so nothing is lost; the store may come back.
                delay = min(RETRY_DELAY_S * 2**failures, MAX_RETRY_DELAY_S)
                if failures == 0:
                    logger.exception("ingest: writing a batch of %d failed; retrying", len(batch))
                    if self._store_state is not None:
                        self._store_state(False)
                else:
                    logger.warning(
                        "ingest: the store still fails (%s); retry in %.0f s", err, delay
                    )
                failures += 1
                with self._stats_lock:
                    self._stats.write_failures += 1
                if self._stop.wait(delay):
                    return
        if failures:
            logger.warning("ingest: the store took a batch again after %d failures", failures)
            if self._store_state is not None:
                self._store_state(True)
        # Also without segment changes: a status changes the devices the API counts.
        self._feed.publish(result.segments)
        if self._lag_observer is not None:
            committed = now_ms()
            for reading in result.accepted:
                self._lag_observer((committed - reading.capture_time_ms) / 1000)
        confirmations = self._confirm_to_devices(batch, records)
        for message in batch:
            if message.qos > 0:
                self._client.ack(message.mid, message.qos)
        with self._stats_lock:
            s = self._stats
            s.received += len(batch)
            s.accepted += len(result.accepted)
            s.duplicates += result.duplicates
            s.rejected += result.rejected
            s.statuses += len(result.statuses)
            s.health += result.health
            s.batches += 1
            s.confirmations += confirmations

    def _confirm_to_devices(self, batch: list[_Incoming], records: Sequence[Telemetry]) -> int:
        """Tell each device which of its reports are now committed; return how many acks."""
        committed = committed_reports(batch, records)
        sent_ms = now_ms()
        for device_id, seqs in committed.items():
            payload = encode_delivery_ack(device_id, seq_ranges(seqs), sent_ms)
            self._client.publish(ack_topic(device_id), payload, qos=1)
        return len(committed)


def committed_reports(
    batch: Sequence[_Incoming], records: Sequence[Telemetry]
) -> dict[str, list[int]]:
    """Device → sequence numbers of the congestion reports a committed batch holds.

    Accepted readings and duplicates are stored; a rejected report is kept as a
    dead letter, so it is committed too: its device must not send it forever.
    """
    committed: dict[str, list[int]] = defaultdict(list)
    for message, record in zip(batch, records, strict=True):
        if isinstance(record, Reading):
            committed[record.device_id].append(record.seq)
        elif isinstance(record, Rejected):
            key = _report_key(message.topic, message.payload)
            if key is not None:
                committed[key[0]].append(key[1])
    return committed


def _report_key(topic: str, payload: bytes) -> tuple[str, int] | None:
    """(topic's device, seq) of a congestion report that failed validation, when it has one."""
    parsed = parse_topic(topic)
    if parsed is None or parsed.kind is not TopicKind.CONGESTION:
        return None
    try:
        report = telemetry_pb2.CongestionReport.FromString(payload)
    except DecodeError:
        return None
    # The topic's device is the one the broker authenticated: only it gets the ack.
    return (parsed.device_id, report.seq) if report.seq > 0 else None
