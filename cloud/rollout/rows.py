"""The rollout wing's rows: rollouts, their devices and transitions, as both stores keep them.

``RolloutStore`` is what the rollout controller and its steps need of a store; the statements
below run on both engines, and ``RolloutRows`` implements the rollout part on any engine's
sessions (``roadsense.cloud.store.session``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from roadsense.cloud.domain import DeviceRecord, HealthRecord, PublishedModel
from roadsense.cloud.rollout.records import ACTIVE_STATES, Rollout, RolloutDevice, RolloutEvent
from roadsense.cloud.store.session import Sessions, SqlSession

ROLLOUT_COLUMNS = (
    "rollout_id, model_version, state, canary_percent, stage, stage_started_ms, created_ms, "
    "created_by, updated_ms, reason, resume_state, evaluation_json"
)
DEVICE_COLUMNS = (
    "rollout_id, device_id, stage, previous_version, want_version, reported_version, state, "
    "error, request_id, sent_ms, attempts, updated_ms"
)
EVENT_COLUMNS = "rollout_id, time_ms, actor, from_state, to_state, reason"
_ACTIVE = ", ".join(f"'{s}'" for s in ACTIVE_STATES)
# Only one rollout acts on the fleet at a time: the insert is conditional, so two
# operators starting together cannot both win.
INSERT_ROLLOUT = (
    f"INSERT INTO rollouts ({ROLLOUT_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
    f"WHERE NOT EXISTS (SELECT 1 FROM rollouts WHERE state IN ({_ACTIVE}))"
)
UPDATE_ROLLOUT = """UPDATE rollouts SET state = ?, stage = ?, stage_started_ms = ?,
    updated_ms = ?, reason = ?, resume_state = ?, evaluation_json = ?
   WHERE rollout_id = ? AND state = ?"""
UPSERT_DEVICE = f"""INSERT INTO rollout_devices ({DEVICE_COLUMNS})
   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
   ON CONFLICT (rollout_id, device_id) DO UPDATE SET stage = excluded.stage,
    previous_version = excluded.previous_version, want_version = excluded.want_version,
    reported_version = excluded.reported_version, state = excluded.state,
    error = excluded.error, request_id = excluded.request_id, sent_ms = excluded.sent_ms,
    attempts = excluded.attempts, updated_ms = excluded.updated_ms"""
INSERT_EVENT = f"INSERT INTO rollout_events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"


def _rollout_row(r: Rollout) -> list[Any]:
    return [
        r.rollout_id,
        r.model_version,
        r.state,
        r.canary_percent,
        r.stage,
        r.stage_started_ms,
        r.created_ms,
        r.created_by,
        r.updated_ms,
        r.reason,
        r.resume_state,
        r.evaluation_json,
    ]


def _device_row(d: RolloutDevice) -> list[Any]:
    return [
        d.rollout_id,
        d.device_id,
        d.stage,
        d.previous_version,
        d.want_version,
        d.reported_version,
        d.state,
        d.error,
        d.request_id,
        d.sent_ms,
        d.attempts,
        d.updated_ms,
    ]


def _event_row(e: RolloutEvent) -> list[Any]:
    return [e.rollout_id, e.time_ms, e.actor, e.from_state, e.to_state, e.reason]


def insert_rollout(
    db: SqlSession, rollout: Rollout, devices: Sequence[RolloutDevice], event: RolloutEvent
) -> bool:
    """Add a rollout with its devices and first event; False when another one is active."""
    if not db.execute(INSERT_ROLLOUT, _rollout_row(rollout)):
        return False
    db.executemany(UPSERT_DEVICE, [_device_row(d) for d in devices])
    db.execute(INSERT_EVENT, _event_row(event))
    return True


def update_rollout(
    db: SqlSession,
    rollout: Rollout,
    expected_state: str,
    event: RolloutEvent | None,
    devices: Sequence[RolloutDevice],
) -> bool:
    """Move a rollout on from ``expected_state`` (False: it is no longer in that state)."""
    changed = db.execute(
        UPDATE_ROLLOUT,
        [
            rollout.state,
            rollout.stage,
            rollout.stage_started_ms,
            rollout.updated_ms,
            rollout.reason,
            rollout.resume_state,
            rollout.evaluation_json,
            rollout.rollout_id,
            expected_state,
        ],
    )
    if not changed:
        return False
    save_devices(db, devices)
    if event is not None:
        db.execute(INSERT_EVENT, _event_row(event))
    return True


def save_devices(db: SqlSession, devices: Sequence[RolloutDevice]) -> None:
    """Upsert device rows, in key order (concurrent writers lock rows in one order)."""
    rows = sorted((_device_row(d) for d in devices), key=lambda r: (r[0], r[1]))
    if rows:
        db.executemany(UPSERT_DEVICE, rows)


def _rollout(row: tuple[Any, ...]) -> Rollout:
    return Rollout(
        rollout_id=str(row[0]),
        model_version=str(row[1]),
        state=row[2],
        canary_percent=float(row[3]),
        stage=int(row[4]),
        stage_started_ms=int(row[5]),
        created_ms=int(row[6]),
        created_by=str(row[7]),
        updated_ms=int(row[8]),
        reason=str(row[9]),
        resume_state=str(row[10]),
        evaluation_json=str(row[11]),
    )


def select_rollouts(db: SqlSession, rollout_id: str | None = None) -> list[Rollout]:
    """Every rollout, newest first, or the one of ``rollout_id``."""
    select = f"SELECT {ROLLOUT_COLUMNS} FROM rollouts"
    if rollout_id is None:
        rows = db.rows(f"{select} ORDER BY created_ms DESC, rollout_id DESC")
    else:
        rows = db.rows(f"{select} WHERE rollout_id = ?", [rollout_id])
    return [_rollout(row) for row in rows]


def select_devices(db: SqlSession, rollout_id: str) -> list[RolloutDevice]:
    """A rollout's devices, by stage then id."""
    rows = db.rows(
        f"SELECT {DEVICE_COLUMNS} FROM rollout_devices WHERE rollout_id = ? "
        "ORDER BY stage, device_id",
        [rollout_id],
    )
    return [
        RolloutDevice(
            rollout_id=str(r[0]),
            device_id=str(r[1]),
            stage=int(r[2]),
            previous_version=str(r[3]),
            want_version=str(r[4]),
            reported_version=str(r[5]),
            state=r[6],
            error=str(r[7]),
            request_id=str(r[8]),
            sent_ms=int(r[9]),
            attempts=int(r[10]),
            updated_ms=int(r[11]),
        )
        for r in rows
    ]


def select_events(db: SqlSession, rollout_id: str) -> list[RolloutEvent]:
    """A rollout's transitions, oldest first."""
    rows = db.rows(
        f"SELECT {EVENT_COLUMNS} FROM rollout_events WHERE rollout_id = ? ORDER BY id",
        [rollout_id],
    )
    return [
        RolloutEvent(str(a), int(b), str(c), str(d), str(e), str(f)) for a, b, c, d, e, f in rows
    ]


def select_health(
    db: SqlSession, device_id: str, from_ms: int, to_ms: int, *, newest_only: bool = False
) -> list[HealthRecord]:
    """A device's health messages received within [from_ms, to_ms], oldest first."""
    order = "DESC" if newest_only else "ASC"
    limit = " LIMIT 1" if newest_only else ""
    rows = db.rows(
        "SELECT device_id, time_ms, received_ms, body FROM health WHERE device_id = ? "
        f"AND received_ms BETWEEN ? AND ? ORDER BY received_ms {order}, id {order}{limit}",
        [device_id, from_ms, to_ms],
    )
    return [HealthRecord(str(d), int(t), int(r), str(b)) for d, t, r, b in rows]


def select_levels(db: SqlSession, device_id: str, from_ms: int, to_ms: int) -> list[float]:
    """Levels of a device's reports captured within [from_ms, to_ms)."""
    rows = db.rows(
        "SELECT level FROM reports WHERE device_id = ? AND capture_time_ms >= ? "
        "AND capture_time_ms < ?",
        [device_id, from_ms, to_ms],
    )
    return [float(r[0]) for r in rows]


def select_measured(
    db: SqlSession, device_id: str, from_ms: int, to_ms: int
) -> list[tuple[float, float]]:
    """(vehicles in view, stopped) means of a device's measured reports captured within
    [from_ms, to_ms)."""
    rows = db.rows(
        "SELECT vehicles_mean, stopped_mean FROM measurements WHERE device_id = ? "
        "AND capture_time_ms >= ? AND capture_time_ms < ?",
        [device_id, from_ms, to_ms],
    )
    return [(float(v), float(s)) for v, s in rows]


class RolloutStore(Protocol):
    """Rollouts, their devices and transitions, and what a verdict reads of the fleet (its
    devices, their health, levels and measurements) and of the releases."""

    def devices(self) -> list[DeviceRecord]:
        """The device registry."""

    def model(self, version: str) -> PublishedModel | None:
        """The release published as ``version``, or None."""

    def add_rollout(
        self, rollout: Rollout, devices: Sequence[RolloutDevice], event: RolloutEvent
    ) -> bool:
        """Record a new rollout, its devices and first event; False (nothing changed) when
        another rollout is still active."""

    def update_rollout(
        self,
        rollout: Rollout,
        expected_state: str,
        event: RolloutEvent | None = None,
        devices: Sequence[RolloutDevice] = (),
    ) -> bool:
        """Store a rollout's new state with its event and device rows, in one transaction,
        only if it is still in ``expected_state`` (False: someone moved it meanwhile)."""

    def save_rollout_devices(self, devices: Sequence[RolloutDevice]) -> None:
        """Store device rows of rollouts (insert or replace)."""

    def rollouts(self) -> list[Rollout]:
        """Every rollout, newest first."""

    def rollout(self, rollout_id: str) -> Rollout | None:
        """The rollout ``rollout_id``, or None."""

    def rollout_devices(self, rollout_id: str) -> list[RolloutDevice]:
        """A rollout's devices, by stage then id."""

    def rollout_events(self, rollout_id: str) -> list[RolloutEvent]:
        """A rollout's recorded transitions, oldest first."""

    def device_health(
        self, device_id: str, from_ms: int, to_ms: int, *, newest_only: bool = False
    ) -> list[HealthRecord]:
        """A device's health messages received within [from_ms, to_ms], oldest first (or
        only the newest one)."""

    def device_levels(self, device_id: str, from_ms: int, to_ms: int) -> list[float]:
        """Congestion levels of a device's reports captured within [from_ms, to_ms)."""

    def device_measured(
        self, device_id: str, from_ms: int, to_ms: int
    ) -> list[tuple[float, float]]:
        """(vehicles in view, stopped) means of a device's measured reports (schema 2)
        captured within [from_ms, to_ms)."""


class RolloutRows(Sessions):
    """The rollout part of ``RolloutStore`` in the statements both engines run."""

    def add_rollout(
        self, rollout: Rollout, devices: Sequence[RolloutDevice], event: RolloutEvent
    ) -> bool:
        try:
            with self._write() as db:
                return insert_rollout(db, rollout, devices, event)
        except self._unique_violation:  # another start won the race for the one active slot
            return False

    def update_rollout(
        self,
        rollout: Rollout,
        expected_state: str,
        event: RolloutEvent | None = None,
        devices: Sequence[RolloutDevice] = (),
    ) -> bool:
        with self._write() as db:
            return update_rollout(db, rollout, expected_state, event, devices)

    def save_rollout_devices(self, devices: Sequence[RolloutDevice]) -> None:
        with self._write() as db:
            save_devices(db, devices)

    def rollouts(self) -> list[Rollout]:
        with self._read() as db:
            return select_rollouts(db)

    def rollout(self, rollout_id: str) -> Rollout | None:
        with self._read() as db:
            found = select_rollouts(db, rollout_id)
        return found[0] if found else None

    def rollout_devices(self, rollout_id: str) -> list[RolloutDevice]:
        with self._read() as db:
            return select_devices(db, rollout_id)

    def rollout_events(self, rollout_id: str) -> list[RolloutEvent]:
        with self._read() as db:
            return select_events(db, rollout_id)

    def device_health(
        self, device_id: str, from_ms: int, to_ms: int, *, newest_only: bool = False
    ) -> list[HealthRecord]:
        with self._read() as db:
            return select_health(db, device_id, from_ms, to_ms, newest_only=newest_only)

    def device_levels(self, device_id: str, from_ms: int, to_ms: int) -> list[float]:
        with self._read() as db:
            return select_levels(db, device_id, from_ms, to_ms)

    def device_measured(
        self, device_id: str, from_ms: int, to_ms: int
    ) -> list[tuple[float, float]]:
        with self._read() as db:
            return select_measured(db, device_id, from_ms, to_ms)
