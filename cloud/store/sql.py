"""What the SQLite and PostgreSQL stores share: every statement (the readings' and segments'
row conversions are in ``rows.py``).

Statements are written once, with ``?`` placeholders, in SQL that both engines run (upserts
with ``ON CONFLICT``, columns of the target table qualified by its name). A backend supplies
sessions on its connection (``SqlSession``: a read, or one write transaction) and its own
deduplication of reports, the one step where the engines differ. The city's statements are
here; each other wing keeps its own beside its code (``forecast/rows.py``, ``fleet/rows.py``,
``releases/rows.py``, ``rollout/rows.py``), and ``SqlStore`` puts them together.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from roadsense.cloud.city.rows import MeasurementRows, insert_measurements
from roadsense.cloud.domain import (
    DeviceRecord,
    HealthRecord,
    Reading,
    Rejected,
    SegmentSnapshot,
    StatusUpdate,
    Telemetry,
)
from roadsense.cloud.fleet.rows import FleetRows
from roadsense.cloud.forecast.rows import ForecastRows
from roadsense.cloud.releases.rows import ReleaseRows
from roadsense.cloud.rollout.rows import RolloutRows
from roadsense.cloud.store.interface import (
    BatchResult,
    HistoryPoint,
    SegmentUpdater,
    SharedFusion,
    Store,
)
from roadsense.cloud.store.migrations import message_sha256
from roadsense.cloud.store.rows import reading_from_row, segment_rows, segment_snapshots
from roadsense.cloud.store.session import Row, SqlSession, Upsert, greater

SEGMENT_CHUNK = 500
"""Segments read per query when only some are wanted."""
SELECT_SEGMENTS = (
    "SELECT segment_id, level, label, updated_ms, last_changed_ms, camera_ids, reports, "
    "vehicles, stopped, occupancy, measured_cameras FROM segments"
)

REPORT_COLUMNS = (
    "device_id, seq, camera_id, segment_id, capture_time_ms, window_start_ms, received_ms, "
    "model_version, labels, probabilities, frames_in_window, level"
)
INSERT_REPORTS = (
    f"INSERT INTO reports ({REPORT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


SEEN_DEVICES = Upsert(
    "devices",
    (("device_id", "text"), ("online", "integer"), ("last_seen_ms", "bigint")),
    f"ON CONFLICT (device_id) DO UPDATE SET last_seen_ms = {greater('devices', 'last_seen_ms')}",
)
UPSERT_STATUS = f"""INSERT INTO devices (device_id, online, last_seen_ms, agent_version,
    model_version, camera_ids) VALUES (?, ?, ?, ?, ?, ?)
   ON CONFLICT (device_id) DO UPDATE SET online = excluded.online,
    last_seen_ms = {greater("devices", "last_seen_ms")},
    agent_version = excluded.agent_version,
    model_version = excluded.model_version, camera_ids = excluded.camera_ids"""
# A repeat of the same message (topic and payload) for the same problem counts up.
INSERT_REJECTED = f"""INSERT INTO dead_letters (received_ms, topic, reason, payload, code,
    message_sha256, last_received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)
   ON CONFLICT (message_sha256, code) DO UPDATE
   SET repeats = dead_letters.repeats + 1, reason = excluded.reason,
    last_received_ms = {greater("dead_letters", "last_received_ms")}"""
# The WHERE: ingest workers sharing a store never move a segment back to an older state.
SAVE_SEGMENTS = Upsert(
    "segments",
    (
        ("segment_id", "text"),
        ("level", "float8"),
        ("label", "text"),
        ("updated_ms", "bigint"),
        ("last_changed_ms", "bigint"),
        ("camera_ids", "text"),
        ("reports", "bigint"),
        ("vehicles", "float8"),
        ("stopped", "float8"),
        ("occupancy", "float8"),
        ("measured_cameras", "bigint"),
    ),
    """ON CONFLICT (segment_id) DO UPDATE SET level = excluded.level,
    label = excluded.label, updated_ms = excluded.updated_ms,
    last_changed_ms = excluded.last_changed_ms,
    camera_ids = excluded.camera_ids, reports = excluded.reports,
    vehicles = excluded.vehicles, stopped = excluded.stopped,
    occupancy = excluded.occupancy, measured_cameras = excluded.measured_cameras
   WHERE excluded.updated_ms >= segments.updated_ms""",
)
ADD_HISTORY = Upsert(
    "segment_history",
    (
        ("segment_id", "text"),
        ("start_ms", "bigint"),
        ("level_sum", "float8"),
        ("reports", "bigint"),
    ),
    """ON CONFLICT (segment_id, start_ms) DO UPDATE
   SET level_sum = segment_history.level_sum + excluded.level_sum,
    reports = segment_history.reports + excluded.reports""",
)
LATEST_READINGS = f"""SELECT {REPORT_COLUMNS} FROM reports r WHERE id = (
    SELECT id FROM reports WHERE device_id = r.device_id
    AND camera_id = r.camera_id AND received_ms - capture_time_ms <= ?
    ORDER BY capture_time_ms DESC, id DESC LIMIT 1)"""
# Each camera's newest in-time report on some segments since a time (both engines).
LATEST_CAMERAS = f"""SELECT {REPORT_COLUMNS} FROM (
    SELECT {REPORT_COLUMNS}, ROW_NUMBER() OVER (PARTITION BY segment_id, device_id, camera_id
        ORDER BY capture_time_ms DESC, id DESC) AS newest
    FROM reports WHERE segment_id {{among}} AND capture_time_ms >= ?
        AND received_ms - capture_time_ms <= ?) AS latest
   WHERE newest = 1"""


def _id_chunks(ids: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
    """``IN (?, ?, ...)`` and its parameters, a few hundred ids at a time."""
    for start in range(0, len(ids), SEGMENT_CHUNK):
        chunk = list(ids[start : start + SEGMENT_CHUNK])
        yield f"IN ({', '.join('?' * len(chunk))})", chunk


SessionT = TypeVar("SessionT", bound=SqlSession)


class SqlStore(
    MeasurementRows, ForecastRows, FleetRows, ReleaseRows, RolloutRows, Store, Generic[SessionT]
):
    """The store's logic on any engine that speaks the statements above and the wings'."""

    def __init__(self, history_interval_ms: int) -> None:
        self._history_interval_ms = history_interval_ms

    @abc.abstractmethod
    def _read(self) -> AbstractContextManager[SessionT]:
        """A session for reads."""

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[SessionT]:
        """A session in one write transaction: committed on success, rolled back on error."""

    @abc.abstractmethod
    def _insert_readings(self, db: SessionT, readings: list[Reading]) -> list[Reading]:
        """Store the readings not stored yet; return them, in order (dedup on device, seq)."""

    def write_batch(
        self,
        records: Sequence[Telemetry],
        update_segments: SegmentUpdater,
        shared: SharedFusion | None = None,
    ) -> BatchResult:
        result = BatchResult()
        seen: dict[str, int] = {}
        with self._write() as db:
            readings = [r for r in records if isinstance(r, Reading)]
            if readings and shared is not None:
                # Before inserting: what the others stored, not this batch's own rows.
                self._merge_stored(db, readings, shared)
            result.accepted = self._insert_readings(db, readings) if readings else []
            insert_measurements(db, result.accepted)
            result.duplicates = len(readings) - len(result.accepted)
            for reading in result.accepted:
                seen[reading.device_id] = max(reading.received_ms, seen.get(reading.device_id, 0))
            for record in records:
                if isinstance(record, Reading):
                    continue
                if isinstance(record, StatusUpdate):
                    _upsert_status(db, record)
                    result.statuses.append(record)
                elif isinstance(record, HealthRecord):
                    db.execute(
                        "INSERT INTO health (device_id, time_ms, received_ms, body) "
                        "VALUES (?, ?, ?, ?)",
                        [record.device_id, record.time_ms, record.received_ms, record.body_json],
                    )
                    seen[record.device_id] = max(record.received_ms, seen.get(record.device_id, 0))
                    result.health += 1
                else:
                    _insert_rejected(db, record)
                    result.rejected += 1
            # Once per device and batch, after its statuses: a report never flips a
            # device that said "offline" in this batch back to online.
            if seen:
                self._upsert(db, SEEN_DEVICES, [(d, 1, t) for d, t in sorted(seen.items())])
            if result.accepted:
                result.segments = update_segments(result.accepted)
                self._upsert(db, SAVE_SEGMENTS, segment_rows(result.segments))
                self._add_history(db, result.accepted)
            if result.accepted or result.statuses or seen:
                self._announce(db, result)
        return result

    def _lock_segments(self, db: SessionT, segment_ids: list[str]) -> None:
        """Keep other writers off these segments until the transaction ends (SQLite: the
        write transaction already holds the whole file)."""

    def _merge_stored(self, db: SessionT, readings: list[Reading], shared: SharedFusion) -> None:
        """Hand ``shared`` what the other writers stored for the batch's segments, under lock."""
        stale_ms = shared.stale_after_ms
        # Only readings that arrived in time change a segment (the others are history).
        current = [r for r in readings if r.received_ms - r.capture_time_ms <= stale_ms]
        if not current:
            return
        segment_ids = sorted({r.segment_id for r in current})
        self._lock_segments(db, segment_ids)
        # Older cameras than this do not count in any of these segments' fusion.
        since = min(r.capture_time_ms for r in current) - stale_ms
        rows: list[Row] = []
        for among, ids in self._among(segment_ids):
            rows += db.rows(LATEST_CAMERAS.format(among=among), [*ids, since, stale_ms])
        readings = [reading_from_row(r) for r in rows]
        shared.merge_stored(self._stored_segments(db, segment_ids), readings)

    def _among(self, ids: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
        """(a condition on a column that holds for ``ids``, its parameters), for as many
        queries as it takes."""
        return _id_chunks(ids)

    def _stored_segments(self, db: SessionT, segment_ids: Sequence[str]) -> list[SegmentSnapshot]:
        rows: list[Row] = []
        for among, ids in self._among(segment_ids):
            rows += db.rows(f"{SELECT_SEGMENTS} WHERE segment_id {among}", ids)
        return segment_snapshots(rows)

    def _announce(self, db: SessionT, result: BatchResult) -> None:
        """Tell other processes, inside the batch's transaction, what it changed (if they can
        hear it: PostgreSQL's NOTIFY; one SQLite process has its in-process feed)."""

    def _upsert(self, db: SessionT, upsert: Upsert, rows: list[Row]) -> None:
        """Insert or update rows (each key once), one statement per row."""
        db.executemany(upsert.per_row, rows)

    def _add_history(self, db: SessionT, readings: list[Reading]) -> None:
        interval = self._history_interval_ms
        intervals: dict[tuple[str, int], list[float]] = {}
        for r in readings:
            key = (r.segment_id, r.capture_time_ms // interval * interval)
            intervals.setdefault(key, []).append(r.level)
        # Rows in key order: concurrent writers take their row locks in one order.
        rows = [
            (s, start, sum(levels), len(levels)) for (s, start), levels in sorted(intervals.items())
        ]
        self._upsert(db, ADD_HISTORY, rows)

    def history(self, segment_id: str, from_ms: int, to_ms: int) -> list[HistoryPoint]:
        with self._read() as db:
            rows = db.rows(
                "SELECT start_ms, level_sum / reports, reports FROM segment_history "
                "WHERE segment_id = ? AND start_ms BETWEEN ? AND ? ORDER BY start_ms",
                [segment_id, from_ms, to_ms],
            )
        return [HistoryPoint(int(s), round(float(level), 3), int(n)) for s, level, n in rows]

    def histories(self, from_ms: int, to_ms: int) -> dict[str, list[HistoryPoint]]:
        with self._read() as db:
            rows = db.rows(
                "SELECT segment_id, start_ms, level_sum / reports, reports FROM segment_history "
                "WHERE start_ms BETWEEN ? AND ? ORDER BY segment_id, start_ms",
                [from_ms, to_ms],
            )
        found: dict[str, list[HistoryPoint]] = {}
        for segment, start, level, n in rows:
            found.setdefault(str(segment), []).append(
                HistoryPoint(int(start), round(float(level), 3), int(n))
            )
        return found

    def prune_history(self, before_ms: int) -> int:
        with self._write() as db:
            return db.execute("DELETE FROM segment_history WHERE start_ms < ?", [before_ms])

    def segments(self, segment_ids: Sequence[str] | None = None) -> list[SegmentSnapshot]:
        with self._read() as db:
            if segment_ids is None:
                return segment_snapshots(db.rows(f"{SELECT_SEGMENTS} ORDER BY segment_id"))
            return self._stored_segments(db, segment_ids)

    def latest_readings(self, arrived_within_ms: int | None = None) -> list[Reading]:
        # 2**62 ms: no report arrives that late, so None reads every report.
        within = 2**62 if arrived_within_ms is None else arrived_within_ms
        with self._read() as db:
            rows = db.rows(LATEST_READINGS, [within])
        return [reading_from_row(row) for row in rows]

    def devices(self) -> list[DeviceRecord]:
        with self._read() as db:
            rows = db.rows(
                "SELECT device_id, online, last_seen_ms, agent_version, model_version, "
                "camera_ids FROM devices ORDER BY device_id"
            )
        return [
            DeviceRecord(
                row[0], bool(row[1]), int(row[2]), row[3], row[4], tuple(json.loads(row[5]))
            )
            for row in rows
        ]

    def device_counts(self) -> tuple[int, int]:
        with self._read() as db:
            ((online, total),) = db.rows("SELECT COALESCE(SUM(online), 0), COUNT(*) FROM devices")
        return int(online), int(total) - int(online)

    def report_keys(self) -> list[tuple[str, int]]:
        with self._read() as db:
            rows = db.rows("SELECT device_id, seq FROM reports ORDER BY id")
        return [(str(d), int(s)) for d, s in rows]

    def dead_letters(self) -> list[tuple[str, str]]:
        with self._read() as db:
            rows = db.rows("SELECT topic, reason FROM dead_letters ORDER BY id")
        return [(str(t), str(r)) for t, r in rows]

    def dead_letter_codes(self) -> dict[str, int]:
        with self._read() as db:
            rows = db.rows("SELECT code, SUM(repeats) FROM dead_letters GROUP BY code")
        return {str(code): int(count) for code, count in rows}


def _upsert_status(db: SqlSession, s: StatusUpdate) -> None:
    db.execute(
        UPSERT_STATUS,
        [
            s.device_id,
            int(s.online),
            s.received_ms,
            s.agent_version,
            s.model_version,
            json.dumps(s.camera_ids),
        ],
    )


def _insert_rejected(db: SqlSession, r: Rejected) -> None:
    db.execute(
        INSERT_REJECTED,
        [
            r.received_ms,
            r.topic,
            r.reason,
            r.payload,
            r.code,
            message_sha256(r.topic, r.payload),
            r.received_ms,
        ],
    )
