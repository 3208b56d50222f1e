"""Rollout rows in the store, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from dataclasses import replace

import pytest

from roadsense.cloud.domain import HealthRecord, Measured, Reading, Telemetry
from roadsense.cloud.rollout.records import Rollout, RolloutDevice, RolloutEvent, RolloutState
from roadsense.cloud.rollout.rows import ROLLOUT_COLUMNS

from ..support.stores import StoreTarget


def _rollout(rollout_id: str, state: RolloutState = "canary", created: int = 1000) -> Rollout:
    return Rollout(
        rollout_id,
        "2.0",
        state,
        10.0,
        0,
        created,
        created,
        "ops",
        created,
        "started",
    )


def _device(rollout_id: str, device_id: str, stage: int = 0) -> RolloutDevice:
    return RolloutDevice(
        rollout_id, device_id, stage, "1.0", "", "1.0", "waiting", "", "", 0, 0, 1000
    )


def test_one_active_rollout_with_devices_and_events(store_target: StoreTarget) -> None:
    store = store_target.open()
    try:
        first = _rollout("r1")
        devices = [_device("r1", "dev-b", 1), _device("r1", "dev-a", 0)]
        event = RolloutEvent("r1", 1000, "ops", "", "canary", "started")
        assert store.add_rollout(first, devices, event)
        # Another rollout while r1 is active is refused and records nothing.
        assert not store.add_rollout(_rollout("r2", created=2000), [_device("r2", "dev-a")], event)
        assert store.rollout("r2") is None
        assert store.rollout_devices("r2") == []
        # Two starts racing past the conditional insert: the database itself keeps one.
        values = ("r3", "2.0", "paused", 1.0, 0, 0, 0, "x", 0, "", "", "{}")
        mark = "?" if store_target.kind == "sqlite" else "%s"
        insert = f"INSERT INTO rollouts ({ROLLOUT_COLUMNS}) VALUES ({', '.join([mark] * 12)})"
        with pytest.raises(Exception, match=r"(?i)unique"):
            store_target.rows(insert, values)
        assert store.rollout("r1") == first
        assert [d.device_id for d in store.rollout_devices("r1")] == ["dev-a", "dev-b"]
        # A transition applies only from the state the caller saw.
        failed = replace(first, state="failed", reason="canary p95 10x", updated_ms=3000)
        moved = RolloutEvent("r1", 3000, "controller", "canary", "failed", "canary p95 10x")
        sent = replace(devices[1], state="rolling_back", want_version="1.0", sent_ms=3000)
        assert store.update_rollout(failed, "canary", moved, [sent])
        assert not store.update_rollout(replace(failed, state="done"), "canary")
        assert store.rollout("r1") == failed
        assert store.rollout_devices("r1")[0] == sent
        assert store.rollout_events("r1") == [event, moved]
        # Once r1 is no longer active, a new rollout starts; newest first.
        assert store.add_rollout(_rollout("r2", created=2000), [_device("r2", "dev-a")], event)
        assert [r.rollout_id for r in store.rollouts()] == ["r2", "r1"]
        store.save_rollout_devices([replace(_device("r2", "dev-a"), state="superseded")])
        assert store.rollout_devices("r2")[0].state == "superseded"
    finally:
        store.close()
    assert store_target.rows(
        "SELECT rollout_id, device_id, state FROM rollout_devices ORDER BY rollout_id, device_id"
    ) == [
        ("r1", "dev-a", "rolling_back"),
        ("r1", "dev-b", "waiting"),
        ("r2", "dev-a", "superseded"),
    ]
    assert store_target.rows("SELECT actor, to_state FROM rollout_events ORDER BY id") == [
        ("ops", "canary"),
        ("controller", "failed"),
        ("ops", "canary"),
    ]


def _reading(device: str, seq: int, capture_ms: int, level: float) -> Reading:
    return Reading(
        device, "cam1", "seg", seq, capture_ms, capture_ms - 10, capture_ms, "1.0",
        ("a", "b"), (0.5, 0.5), 1, level,
    )  # fmt: skip


def test_health_and_levels_of_one_device_by_time(store_target: StoreTarget) -> None:
    store = store_target.open()
    try:
        records: list[Telemetry] = [
            HealthRecord("dev-a", 1, 100, '{"modelVersion": "1.0"}'),
            HealthRecord("dev-a", 2, 200, '{"modelVersion": "2.0"}'),
            HealthRecord("dev-b", 3, 150, '{"modelVersion": "9.9"}'),
            _reading("dev-a", 1, 100, 2.5),
            _reading("dev-a", 2, 200, 7.5),
            _reading("dev-b", 1, 150, 5.0),
        ]
        store.write_batch(records, lambda readings: [])
        assert [h.body_json for h in store.device_health("dev-a", 0, 1000)] == [
            '{"modelVersion": "1.0"}',
            '{"modelVersion": "2.0"}',
        ]
        newest = store.device_health("dev-a", 0, 1000, newest_only=True)
        assert [h.received_ms for h in newest] == [200]
        assert store.device_health("dev-a", 101, 199) == []
        assert store.device_levels("dev-a", 100, 200) == [2.5]
        assert sorted(store.device_levels("dev-a", 0, 1000)) == [2.5, 7.5]
        assert store.device_levels("dev-c", 0, 1000) == []
    finally:
        store.close()


def test_measured_vehicles_and_stopped_of_one_device_by_time(store_target: StoreTarget) -> None:
    def measured(
        device: str, seq: int, capture_ms: int, vehicles: float, stopped: float
    ) -> Reading:
        figures = Measured(4, vehicles, 9, stopped, 3, 0.2, "light", "occupancy-stopped/1", 0.8)
        return replace(_reading(device, seq, capture_ms, 2.5), measured=figures)

    store = store_target.open()
    try:
        records: list[Telemetry] = [
            measured("dev-a", 1, 100, 4.0, 1.0),
            measured("dev-a", 2, 200, 6.5, 0.5),
            _reading("dev-a", 3, 150, 5.0),  # a classifying camera measures nothing
            measured("dev-b", 1, 150, 9.0, 9.0),
        ]
        store.write_batch(records, lambda readings: [])
        assert sorted(store.device_measured("dev-a", 0, 1000)) == [(4.0, 1.0), (6.5, 0.5)]
        assert store.device_measured("dev-a", 100, 200) == [(4.0, 1.0)]
        assert store.device_measured("dev-a", 101, 1000) == [(6.5, 0.5)]
        assert store.device_measured("dev-c", 0, 1000) == []
    finally:
        store.close()
