"""The city store: an interface, and its SQLite implementation.

Everything the cloud keeps goes through ``Store`` so a multi-node deployment
can put it on a server database later. ``SqliteStore`` writes each batch of
messages in one transaction, deduplicating reports on (device_id, seq).
"""

from __future__ import annotations

import abc
import functools
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadsense.cloud.domain import (
    DeviceRecord,
    HealthRecord,
    HorizonScore,
    Reading,
    RegistryEntry,
    Rejected,
    SegmentForecast,
    SegmentSnapshot,
    StatusUpdate,
    Telemetry,
    TokenUse,
)
from roadsense.cloud.feeds import ObservationRecord, WeatherRecord
from roadsense.cloud.migrations import MIGRATIONS, message_sha256
from roadsense.core.sqlite import migrate, open_database, transaction

SegmentUpdater = Callable[[list[Reading]], list[SegmentSnapshot]]
KEY_CHUNK = 400
"""(device, seq) pairs looked up per query when deduplicating a batch."""


@functools.lru_cache(maxsize=64)
def _labels_json(labels: tuple[str, ...]) -> str:
    # Every report of a model carries the same labels: encode them once.
    return json.dumps(labels)


@dataclass
class BatchResult:
    """What one write did."""

    accepted: list[Reading] = field(default_factory=list)
    duplicates: int = 0
    rejected: int = 0
    statuses: list[StatusUpdate] = field(default_factory=list)
    health: int = 0
    segments: list[SegmentSnapshot] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryPoint:
    """Mean level of a segment over one history interval."""

    start_ms: int
    level: float
    reports: int


class Store(abc.ABC):
    """Persistence of reports, segments, devices, health and dead letters."""

    @abc.abstractmethod
    def write_batch(
        self, records: Sequence[Telemetry], update_segments: SegmentUpdater
    ) -> BatchResult:
        """Store records atomically; ``update_segments`` turns new readings into segment rows."""

    @abc.abstractmethod
    def segments(self) -> list[SegmentSnapshot]:
        """Every known segment's last stored state."""

    @abc.abstractmethod
    def latest_readings(self, arrived_within_ms: int | None = None) -> list[Reading]:
        """The newest reading of every camera; with ``arrived_within_ms``, the newest of
        those received no later than that after their capture."""

    @abc.abstractmethod
    def devices(self) -> list[DeviceRecord]:
        """The device registry."""

    @abc.abstractmethod
    def device_counts(self) -> tuple[int, int]:
        """(online, offline) devices in the registry."""

    @abc.abstractmethod
    def report_keys(self) -> list[tuple[str, int]]:
        """Every stored (device_id, seq), in insertion order."""

    @abc.abstractmethod
    def dead_letters(self) -> list[tuple[str, str]]:
        """(topic, reason) of every distinct rejected message, oldest first; a repeat of the
        same message (topic and payload) for the same problem is counted, not listed again."""

    @abc.abstractmethod
    def history(self, segment_id: str, from_ms: int, to_ms: int) -> list[HistoryPoint]:
        """A segment's history intervals starting within [from_ms, to_ms]."""

    @abc.abstractmethod
    def histories(self, from_ms: int, to_ms: int) -> dict[str, list[HistoryPoint]]:
        """Every segment's history intervals starting within [from_ms, to_ms], in one read."""

    @abc.abstractmethod
    def prune_history(self, before_ms: int) -> int:
        """Delete history intervals that start before ``before_ms``; return how many."""

    @abc.abstractmethod
    def add_observations(self, records: Sequence[ObservationRecord], received_ms: int) -> int:
        """Store observations not stored yet (segment, time, source); return how many."""

    @abc.abstractmethod
    def add_weather(self, records: Sequence[WeatherRecord], received_ms: int) -> int:
        """Store weather not stored yet (time, source); return how many."""

    @abc.abstractmethod
    def observations(self, segment_id: str, from_ms: int, to_ms: int) -> list[ObservationRecord]:
        """A segment's observations within [from_ms, to_ms], oldest first."""

    @abc.abstractmethod
    def observations_between(self, from_ms: int, to_ms: int) -> list[tuple[str, int, float]]:
        """(segment, time, value) of every observation in [from_ms, to_ms), oldest first."""

    @abc.abstractmethod
    def newest_observation_ms(self) -> int | None:
        """Time of the newest observation of any segment (None: there is none)."""

    @abc.abstractmethod
    def weather_between(self, from_ms: int, to_ms: int) -> list[tuple[int, str]]:
        """(time, code) of the weather in [from_ms, to_ms), oldest first."""

    @abc.abstractmethod
    def save_forecasts(self, forecasts: Sequence[SegmentForecast]) -> None:
        """Store forecasts, replacing any of the same segment and origin."""

    @abc.abstractmethod
    def latest_forecasts(self) -> list[SegmentForecast]:
        """Each segment's forecast from its newest origin."""

    @abc.abstractmethod
    def score_forecasts(self, complete_before_ms: int) -> int:
        """Score forecasts whose target interval ended by ``complete_before_ms`` against the
        mean observation of that interval; return how many were scored."""

    @abc.abstractmethod
    def forecast_scores(self, model_version: str) -> list[HorizonScore]:
        """Online MAE per horizon of a model version's scored forecasts."""

    @abc.abstractmethod
    def prune_forecasts(self, before_ms: int) -> int:
        """Delete forecasts made for origins before ``before_ms``; return rows deleted."""

    @abc.abstractmethod
    def dead_letter_codes(self) -> dict[str, int]:
        """How many messages were rejected, by problem code, repeats included."""

    @abc.abstractmethod
    def add_enrollment_token(
        self, token_sha256: str, device_id: str | None, expires_ms: int, uses: int, now: int
    ) -> None:
        """Keep a new enrollment token (its hash only)."""

    @abc.abstractmethod
    def use_enrollment_token(self, token_sha256: str, now: int) -> TokenUse:
        """Spend one use of a token, atomically; why not when it cannot be used."""

    @abc.abstractmethod
    def record_enrollment(self, device_id: str, certificate_serial: str, now: int) -> None:
        """Mark a device enrolled with a new certificate."""

    @abc.abstractmethod
    def revoke_device(
        self, device_id: str, reason: str, now: int, *, known_elsewhere: bool = False
    ) -> RegistryEntry | None:
        """Mark a device revoked (idempotent: the first revocation time stays).

        Only a device the registry or telemetry knows, or one ``known_elsewhere`` (by the
        fleet's CA or manifest); for any other id nothing is recorded and None is returned.
        """

    @abc.abstractmethod
    def registry(self) -> dict[str, RegistryEntry]:
        """Every device in the identity registry."""

    @abc.abstractmethod
    def revoked_devices(self) -> frozenset[str]:
        """Ids of revoked devices, whose telemetry ingest rejects."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the database."""


class SqliteStore(Store):
    """The store on one SQLite file (WAL)."""

    def __init__(self, path: str | Path, history_interval_ms: int = 60_000) -> None:
        self._history_interval_ms = history_interval_ms
        self._lock = threading.Lock()
        self._db = open_database(path)
        migrate(self._db, MIGRATIONS)

    def write_batch(
        self, records: Sequence[Telemetry], update_segments: SegmentUpdater
    ) -> BatchResult:
        result = BatchResult()
        seen: dict[str, int] = {}
        with self._lock, transaction(self._db):
            readings = [r for r in records if isinstance(r, Reading)]
            result.accepted = self._insert_readings(readings)
            result.duplicates = len(readings) - len(result.accepted)
            for reading in result.accepted:
                seen[reading.device_id] = max(reading.received_ms, seen.get(reading.device_id, 0))
            for record in records:
                if isinstance(record, Reading):
                    continue
                if isinstance(record, StatusUpdate):
                    self._upsert_status(record)
                    result.statuses.append(record)
                elif isinstance(record, HealthRecord):
                    self._db.execute(
                        "INSERT INTO health (device_id, time_ms, received_ms, body) "
                        "VALUES (?, ?, ?, ?)",
                        [record.device_id, record.time_ms, record.received_ms, record.body_json],
                    )
                    seen[record.device_id] = max(record.received_ms, seen.get(record.device_id, 0))
                    result.health += 1
                else:
                    self._insert_rejected(record)
                    result.rejected += 1
            # Once per device and batch, after its statuses: a report never flips a
            # device that said "offline" in this batch back to online.
            self._db.conn.executemany(
                """INSERT INTO devices (device_id, online, last_seen_ms) VALUES (?, 1, ?)
                   ON CONFLICT (device_id) DO UPDATE
                   SET last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms)""",
                list(seen.items()),
            )
            if result.accepted:
                result.segments = update_segments(result.accepted)
                self._save_segments(result.segments)
                self._add_history(result.accepted)
        return result

    def _insert_readings(self, readings: list[Reading]) -> list[Reading]:
        """Store the readings not stored yet; return them, in order (dedup on device, seq)."""
        existing: set[tuple[str, int]] = set()
        keys = [(r.device_id, r.seq) for r in readings]
        for start in range(0, len(keys), KEY_CHUNK):
            chunk = keys[start : start + KEY_CHUNK]
            values = ",".join("(?, ?)" for _ in chunk)
            rows = self._db.conn.execute(
                f"SELECT device_id, seq FROM reports WHERE (device_id, seq) IN (VALUES {values})",
                [part for key in chunk for part in key],
            ).fetchall()
            existing.update((str(d), int(s)) for d, s in rows)
        fresh = []
        for reading in readings:
            key = (reading.device_id, reading.seq)
            if key not in existing:
                existing.add(key)  # a redelivery inside the same batch
                fresh.append(reading)
        self._db.conn.executemany(
            """INSERT INTO reports (device_id, seq, camera_id, segment_id,
                capture_time_ms, window_start_ms, received_ms, model_version, labels,
                probabilities, frames_in_window, level)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                (
                    r.device_id,
                    r.seq,
                    r.camera_id,
                    r.segment_id,
                    r.capture_time_ms,
                    r.window_start_ms,
                    r.received_ms,
                    r.model_version,
                    _labels_json(r.labels),
                    "[" + ",".join(repr(p) for p in r.probabilities) + "]",
                    r.frames_in_window,
                    r.level,
                )
                for r in fresh
            ],
        )
        return fresh

    def _upsert_status(self, s: StatusUpdate) -> None:
        self._db.execute(
            """INSERT INTO devices (device_id, online, last_seen_ms, agent_version,
                model_version, camera_ids) VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (device_id) DO UPDATE SET online = excluded.online,
                last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms),
                agent_version = excluded.agent_version,
                model_version = excluded.model_version, camera_ids = excluded.camera_ids""",
            [
                s.device_id,
                int(s.online),
                s.received_ms,
                s.agent_version,
                s.model_version,
                json.dumps(s.camera_ids),
            ],
        )

    def _insert_rejected(self, r: Rejected) -> None:
        # A repeat of the same message (topic and payload) for the same problem counts up.
        self._db.execute(
            """INSERT INTO dead_letters (received_ms, topic, reason, payload, code,
                message_sha256, last_received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (message_sha256, code) DO UPDATE
               SET repeats = repeats + 1, reason = excluded.reason,
                last_received_ms = MAX(last_received_ms, excluded.last_received_ms)""",
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

    def _save_segments(self, segments: list[SegmentSnapshot]) -> None:
        self._db.conn.executemany(
            """INSERT INTO segments (segment_id, level, label, updated_ms, last_changed_ms,
                camera_ids, reports) VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (segment_id) DO UPDATE SET level = excluded.level,
                label = excluded.label, updated_ms = excluded.updated_ms,
                last_changed_ms = excluded.last_changed_ms,
                camera_ids = excluded.camera_ids, reports = excluded.reports""",
            [
                (
                    s.segment_id,
                    s.level,
                    s.label,
                    s.updated_ms,
                    s.last_changed_ms,
                    json.dumps(s.camera_ids),
                    s.reports,
                )
                for s in segments
            ],
        )

    def _add_history(self, readings: list[Reading]) -> None:
        interval = self._history_interval_ms
        self._db.conn.executemany(
            """INSERT INTO segment_history (segment_id, start_ms, level_sum, reports)
               VALUES (?, ?, ?, 1)
               ON CONFLICT (segment_id, start_ms) DO UPDATE
               SET level_sum = level_sum + excluded.level_sum, reports = reports + 1""",
            [(r.segment_id, r.capture_time_ms // interval * interval, r.level) for r in readings],
        )

    def history(self, segment_id: str, from_ms: int, to_ms: int) -> list[HistoryPoint]:
        with self._lock:
            rows = self._db.execute(
                "SELECT start_ms, level_sum / reports, reports FROM segment_history "
                "WHERE segment_id = ? AND start_ms BETWEEN ? AND ? ORDER BY start_ms",
                [segment_id, from_ms, to_ms],
            ).fetchall()
        return [HistoryPoint(int(s), round(float(level), 3), int(n)) for s, level, n in rows]

    def histories(self, from_ms: int, to_ms: int) -> dict[str, list[HistoryPoint]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT segment_id, start_ms, level_sum / reports, reports FROM segment_history "
                "WHERE start_ms BETWEEN ? AND ? ORDER BY segment_id, start_ms",
                [from_ms, to_ms],
            ).fetchall()
        found: dict[str, list[HistoryPoint]] = {}
        for segment, start, level, n in rows:
            found.setdefault(str(segment), []).append(
                HistoryPoint(int(start), round(float(level), 3), int(n))
            )
        return found

    def prune_history(self, before_ms: int) -> int:
        with self._lock, transaction(self._db):
            return int(
                self._db.execute(
                    "DELETE FROM segment_history WHERE start_ms < ?", [before_ms]
                ).rowcount
            )

    def segments(self) -> list[SegmentSnapshot]:
        with self._lock:
            rows = self._db.execute(
                "SELECT segment_id, level, label, updated_ms, last_changed_ms, camera_ids, "
                "reports FROM segments ORDER BY segment_id"
            ).fetchall()
        return [
            SegmentSnapshot(
                segment_id=row[0],
                level=row[1],
                label=row[2],
                updated_ms=row[3],
                last_changed_ms=row[4],
                camera_ids=tuple(json.loads(row[5])),
                stale=False,
                reports=row[6],
            )
            for row in rows
        ]

    def latest_readings(self, arrived_within_ms: int | None = None) -> list[Reading]:
        # 2**62 ms: no report arrives that late, so None reads every report.
        within = 2**62 if arrived_within_ms is None else arrived_within_ms
        with self._lock:
            rows = self._db.execute(
                """SELECT device_id, camera_id, segment_id, seq, capture_time_ms,
                    window_start_ms, received_ms, model_version, labels, probabilities,
                    frames_in_window, level
                   FROM reports r WHERE id = (
                    SELECT id FROM reports WHERE device_id = r.device_id
                    AND camera_id = r.camera_id AND received_ms - capture_time_ms <= ?
                    ORDER BY capture_time_ms DESC, id DESC LIMIT 1)""",
                [within],
            ).fetchall()
        return [
            Reading(
                device_id=row[0],
                camera_id=row[1],
                segment_id=row[2],
                seq=row[3],
                capture_time_ms=row[4],
                window_start_ms=row[5],
                received_ms=row[6],
                model_version=row[7],
                labels=tuple(json.loads(row[8])),
                probabilities=tuple(json.loads(row[9])),
                frames_in_window=row[10],
                level=row[11],
            )
            for row in rows
        ]

    def devices(self) -> list[DeviceRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT device_id, online, last_seen_ms, agent_version, model_version, "
                "camera_ids FROM devices ORDER BY device_id"
            ).fetchall()
        return [
            DeviceRecord(row[0], bool(row[1]), row[2], row[3], row[4], tuple(json.loads(row[5])))
            for row in rows
        ]

    def device_counts(self) -> tuple[int, int]:
        with self._lock:
            online, total = self._db.execute(
                "SELECT COALESCE(SUM(online), 0), COUNT(*) FROM devices"
            ).fetchone()
        return int(online), int(total) - int(online)

    def report_keys(self) -> list[tuple[str, int]]:
        with self._lock:
            rows = self._db.execute("SELECT device_id, seq FROM reports ORDER BY id").fetchall()
        return [(str(d), int(s)) for d, s in rows]

    def dead_letters(self) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT topic, reason FROM dead_letters ORDER BY id").fetchall()
        return [(str(t), str(r)) for t, r in rows]

    def add_observations(self, records: Sequence[ObservationRecord], received_ms: int) -> int:
        with self._lock, transaction(self._db):
            before = self._db.conn.total_changes
            self._db.conn.executemany(
                "INSERT OR IGNORE INTO observations (segment_id, time_ms, source, value, unit, "
                "received_ms) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.segment_id, r.time_ms, r.source, r.value, r.unit, received_ms)
                    for r in records
                ],
            )
            return self._db.conn.total_changes - before

    def add_weather(self, records: Sequence[WeatherRecord], received_ms: int) -> int:
        with self._lock, transaction(self._db):
            before = self._db.conn.total_changes
            self._db.conn.executemany(
                "INSERT OR IGNORE INTO weather (time_ms, source, code, received_ms) "
                "VALUES (?, ?, ?, ?)",
                [(r.time_ms, r.source, r.code, received_ms) for r in records],
            )
            return self._db.conn.total_changes - before

    def observations(self, segment_id: str, from_ms: int, to_ms: int) -> list[ObservationRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT segment_id, time_ms, value, unit, source FROM observations "
                "WHERE segment_id = ? AND time_ms BETWEEN ? AND ? ORDER BY time_ms, source",
                [segment_id, from_ms, to_ms],
            ).fetchall()
        return [
            ObservationRecord(str(s), int(t), float(v), str(u), str(src))
            for s, t, v, u, src in rows
        ]

    def observations_between(self, from_ms: int, to_ms: int) -> list[tuple[str, int, float]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT segment_id, time_ms, value FROM observations "
                "WHERE time_ms >= ? AND time_ms < ? ORDER BY time_ms",
                [from_ms, to_ms],
            ).fetchall()
        return [(str(s), int(t), float(v)) for s, t, v in rows]

    def newest_observation_ms(self) -> int | None:
        with self._lock:
            (newest,) = self._db.execute("SELECT MAX(time_ms) FROM observations").fetchone()
        return int(newest) if newest is not None else None

    def weather_between(self, from_ms: int, to_ms: int) -> list[tuple[int, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT time_ms, code FROM weather WHERE time_ms >= ? AND time_ms < ? "
                "ORDER BY time_ms, source",
                [from_ms, to_ms],
            ).fetchall()
        return [(int(t), str(c)) for t, c in rows]

    def save_forecasts(self, forecasts: Sequence[SegmentForecast]) -> None:
        rows = [
            (
                f.segment_id,
                f.origin_ms,
                horizon,
                f.interval_ms,
                f.target_ms(horizon),
                value,
                f.observed_probability[horizon - 1],
                f.model_version,
                f.newest_input_ms,
                f.missing_fraction,
                f.made_ms,
            )
            for f in forecasts
            for horizon, value in enumerate(f.values, start=1)
        ]
        with self._lock, transaction(self._db):
            self._db.conn.executemany(
                "INSERT OR REPLACE INTO forecasts (segment_id, origin_ms, horizon, interval_ms, "
                "target_ms, value, observed_probability, model_version, newest_input_ms, "
                "missing_fraction, made_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def latest_forecasts(self) -> list[SegmentForecast]:
        with self._lock:
            rows = self._db.execute(
                """SELECT f.segment_id, f.origin_ms, f.interval_ms, f.value,
                          f.observed_probability, f.model_version, f.newest_input_ms,
                          f.missing_fraction, f.made_ms
                   FROM forecasts f
                   JOIN (SELECT segment_id, MAX(origin_ms) AS origin_ms
                         FROM forecasts GROUP BY segment_id) newest
                   USING (segment_id, origin_ms)
                   ORDER BY f.segment_id, f.horizon"""
            ).fetchall()
        grouped: dict[str, list[Any]] = {}
        for row in rows:
            grouped.setdefault(str(row[0]), []).append(row)
        return [
            SegmentForecast(
                segment_id=segment,
                origin_ms=int(group[0][1]),
                interval_ms=int(group[0][2]),
                values=tuple(float(r[3]) for r in group),
                observed_probability=tuple(float(r[4]) for r in group),
                model_version=str(group[0][5]),
                newest_input_ms=int(group[0][6]),
                missing_fraction=float(group[0][7]),
                made_ms=int(group[0][8]),
            )
            for segment, group in grouped.items()
        ]

    def score_forecasts(self, complete_before_ms: int) -> int:
        with self._lock, transaction(self._db):
            return int(
                self._db.execute(
                    """UPDATE forecasts SET scored = 1, actual = (
                           SELECT AVG(o.value) FROM observations o
                           WHERE o.segment_id = forecasts.segment_id
                             AND o.time_ms >= forecasts.target_ms
                             AND o.time_ms < forecasts.target_ms + forecasts.interval_ms)
                       WHERE scored = 0 AND target_ms + interval_ms <= ?""",
                    [complete_before_ms],
                ).rowcount
            )

    def forecast_scores(self, model_version: str) -> list[HorizonScore]:
        with self._lock:
            rows = self._db.execute(
                "SELECT horizon, AVG(ABS(value - actual)), COUNT(*) FROM forecasts "
                "WHERE scored = 1 AND actual IS NOT NULL AND model_version = ? "
                "GROUP BY horizon ORDER BY horizon",
                [model_version],
            ).fetchall()
        return [HorizonScore(int(h), float(mae), int(n)) for h, mae, n in rows]

    def prune_forecasts(self, before_ms: int) -> int:
        with self._lock, transaction(self._db):
            return int(
                self._db.execute("DELETE FROM forecasts WHERE origin_ms < ?", [before_ms]).rowcount
            )

    def dead_letter_codes(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT code, SUM(repeats) FROM dead_letters GROUP BY code"
            ).fetchall()
        return {str(code): int(count) for code, count in rows}

    def add_enrollment_token(
        self, token_sha256: str, device_id: str | None, expires_ms: int, uses: int, now: int
    ) -> None:
        with self._lock, transaction(self._db):
            self._db.execute(
                "INSERT INTO enrollment_tokens (token_sha256, device_id, created_ms, expires_ms, "
                "uses_left) VALUES (?, ?, ?, ?, ?)",
                [token_sha256, device_id, now, expires_ms, uses],
            )

    def use_enrollment_token(self, token_sha256: str, now: int) -> TokenUse:
        with self._lock, transaction(self._db):
            row = self._db.execute(
                "SELECT device_id, expires_ms, uses_left FROM enrollment_tokens "
                "WHERE token_sha256 = ?",
                [token_sha256],
            ).fetchone()
            if row is None:
                return TokenUse("unknown")
            device_id, expires_ms, uses_left = row
            if expires_ms <= now:
                return TokenUse("expired", device_id)
            if uses_left <= 0:
                return TokenUse("used_up", device_id)
            self._db.execute(
                "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE token_sha256 = ?",
                [token_sha256],
            )
        return TokenUse("ok", device_id)

    def record_enrollment(self, device_id: str, certificate_serial: str, now: int) -> None:
        with self._lock, transaction(self._db):
            self._db.execute(
                """INSERT INTO fleet_registry (device_id, enrolled_ms, certificate_serial)
                   VALUES (?, ?, ?) ON CONFLICT (device_id) DO UPDATE
                   SET enrolled_ms = excluded.enrolled_ms,
                       certificate_serial = excluded.certificate_serial""",
                [device_id, now, certificate_serial],
            )

    def revoke_device(
        self, device_id: str, reason: str, now: int, *, known_elsewhere: bool = False
    ) -> RegistryEntry | None:
        with self._lock, transaction(self._db):
            self._db.execute(
                """INSERT INTO fleet_registry (device_id, revoked_ms, revoke_reason)
                   SELECT ?, ?, ? WHERE ?
                    OR EXISTS (SELECT 1 FROM devices WHERE device_id = ?)
                    OR EXISTS (SELECT 1 FROM fleet_registry WHERE device_id = ?)
                   ON CONFLICT (device_id) DO UPDATE
                   SET revoked_ms = COALESCE(revoked_ms, excluded.revoked_ms),
                       revoke_reason = CASE WHEN revoked_ms IS NULL
                           THEN excluded.revoke_reason ELSE revoke_reason END""",
                [device_id, now, reason, known_elsewhere, device_id, device_id],
            )
        return self.registry().get(device_id)

    def registry(self) -> dict[str, RegistryEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT device_id, enrolled_ms, revoked_ms, certificate_serial, revoke_reason "
                "FROM fleet_registry ORDER BY device_id"
            ).fetchall()
        return {row[0]: RegistryEntry(*row) for row in rows}

    def revoked_devices(self) -> frozenset[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT device_id FROM fleet_registry WHERE revoked_ms IS NOT NULL"
            ).fetchall()
        return frozenset(str(r[0]) for r in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
