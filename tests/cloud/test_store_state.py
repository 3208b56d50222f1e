"""The city store, on real SQLite files and a real PostgreSQL, and the fused city state."""

from __future__ import annotations

import hashlib
import math
import sqlite3
from pathlib import Path

from roadsense.cloud.city.segments import SegmentConfig
from roadsense.cloud.city.state import CityTracker, congestion_index, segments_per_band
from roadsense.cloud.city.watch import ChangeFeed
from roadsense.cloud.domain import Reading, Rejected, Telemetry
from roadsense.cloud.ingest.decode import DEFAULT_MAX_LATE_MS, decode_message
from roadsense.cloud.store.interface import HistoryPoint
from roadsense.cloud.store.migrations import MIGRATIONS
from roadsense.cloud.store.sqlite import SqliteStore
from roadsense.core.sqlite import migrate, open_database
from roadsense.core.timeutil import now_ms
from roadsense.proto.v1 import telemetry_pb2

from ..support.factories import report, status
from ..support.stores import StoreTarget

STALE_MS = 60_000


def _decode(
    message: telemetry_pb2.CongestionReport,
    received_ms: int | None = None,
    max_late_ms: int = DEFAULT_MAX_LATE_MS,
) -> Telemetry:
    topic = f"roadsense/v1/{message.device_id}/{message.camera_id}/congestion"
    received = now_ms() if received_ms is None else received_ms
    payload = message.SerializeToString()
    return decode_message(topic, payload, received, 30_000, max_late_ms=max_late_ms)


def _reading(received_ms: int | None = None, **kwargs: object) -> Reading:
    record = _decode(report(**kwargs), received_ms)  # type: ignore[arg-type]
    assert isinstance(record, Reading)
    return record


def test_duplicates_are_stored_once(store_target: StoreTarget) -> None:
    store = store_target.open()
    tracker = CityTracker(STALE_MS)
    first = store.write_batch([_reading(seq=1), _reading(seq=2)], tracker.apply)
    again = store.write_batch([_reading(seq=2), _reading(seq=3), _reading(seq=2)], tracker.apply)
    assert len(first.accepted) == 2
    assert first.duplicates == 0
    assert [r.seq for r in again.accepted] == [3]
    assert again.duplicates == 2
    assert store.report_keys() == [("dev-1", 1), ("dev-1", 2), ("dev-1", 3)]
    store.close()
    rows = store_target.rows("SELECT device_id, seq, segment_id, level FROM reports ORDER BY seq")
    assert rows == [
        ("dev-1", 1, "seg-1", 5.0),
        ("dev-1", 2, "seg-1", 5.0),
        ("dev-1", 3, "seg-1", 5.0),
    ]


def test_dead_letters_and_device_registry(store_target: StoreTarget) -> None:
    store = store_target.open()
    tracker = CityTracker(STALE_MS)
    birth = decode_message(
        "roadsense/v1/dev-1/status", status().SerializeToString(), now_ms(), 30_000
    )
    rejected = Rejected("roadsense/v1/x/status", "bad", b"\x01", now_ms())
    result = store.write_batch([birth, rejected], tracker.apply)
    assert result.rejected == 1
    assert len(result.statuses) == 1
    assert store.dead_letters() == [("roadsense/v1/x/status", "bad")]
    (device,) = store.devices()
    assert device.device_id == "dev-1"
    assert device.online
    assert device.camera_ids == ("cam1",)
    will = decode_message(
        "roadsense/v1/dev-1/status", status(online=False).SerializeToString(), now_ms(), 30_000
    )
    store.write_batch([will], tracker.apply)
    assert not store.devices()[0].online
    store.close()


def test_segment_fuses_its_cameras_and_survives_restart(store_target: StoreTarget) -> None:
    store = store_target.open()
    tracker = CityTracker(STALE_MS)
    free = [1.0, 0, 0, 0, 0]
    jammed = [0, 0, 0, 0, 1.0]
    t = now_ms()
    store.write_batch(
        [
            _reading(device="a", camera="c1", seq=1, probabilities=free, capture_time_ms=t - 1000),
            _reading(device="b", camera="c1", seq=1, probabilities=jammed, capture_time_ms=t),
            _reading(device="b", camera="c2", seq=2, segment="seg-2", probabilities=free),
        ],
        tracker.apply,
    )
    seg1, seg2 = tracker.snapshot(now_ms())
    assert seg1.segment_id == "seg-1"
    # Equal confidence; the older camera weighs exp(-1 s / 60 s) against 1.
    older = math.exp(-1000 / STALE_MS)
    assert seg1.level == round(10 / (1 + older), 3)
    assert seg1.camera_ids == ("a/c1", "b/c1")
    assert seg1.label == "jammed"  # label of the newest reading
    assert seg1.reports == 2
    assert seg2.reports == 1
    assert congestion_index([seg1, seg2]) == round(seg1.level / 2, 3)
    store.close()

    reopened = store_target.open()
    restored = CityTracker(STALE_MS)
    restored.load(reopened.segments(), reopened.latest_readings())
    assert restored.snapshot(now_ms()) == tracker.snapshot(now_ms())
    # A late report is stored but does not move the segment back in time.
    result = reopened.write_batch(
        [_reading(device="b", camera="c1", seq=9, probabilities=free, capture_time_ms=t - 50_000)],
        restored.apply,
    )
    assert len(result.accepted) == 1
    assert restored.snapshot(now_ms(), ["seg-1"])[0].level == seg1.level
    reopened.close()


def test_stale_segments_leave_the_city_index(tmp_path: Path) -> None:
    tracker = CityTracker(STALE_MS)
    old = now_ms() - 10 * 60_000  # arrived on time 10 min ago, nothing since
    tracker.apply([_reading(old, probabilities=[0, 0, 0, 0, 1.0], capture_time_ms=old)])
    tracker.apply([_reading(seq=2, segment="seg-2", probabilities=[1.0, 0, 0, 0, 0])])
    stale, fresh = tracker.snapshot(now_ms())
    assert stale.stale
    assert not fresh.stale
    assert congestion_index([stale, fresh]) == 0.0


def test_watchers_coalesce_and_filter() -> None:
    feed = ChangeFeed()
    tracker = CityTracker(STALE_MS)
    everything = feed.subscribe()
    only_two = feed.subscribe(["seg-2"])
    for seq in range(1, 50):
        feed.publish(tracker.apply([_reading(seq=seq, segment=f"seg-{seq % 2 + 1}")]))
    changed = everything.take(0.1)
    assert sorted(s.segment_id for s in changed) == ["seg-1", "seg-2"]
    assert {s.segment_id: s.reports for s in changed} == {"seg-1": 24, "seg-2": 25}
    assert [s.segment_id for s in only_two.take(0.1)] == ["seg-2"]
    assert everything.take(0.01) == []
    feed.unsubscribe(everything)
    assert len(feed) == 1


def test_confident_and_recent_cameras_weigh_more() -> None:
    tracker = CityTracker(STALE_MS)
    t = now_ms()
    sure_jam = [0, 0, 0, 0, 1.0]
    unsure_free = [0.4, 0.3, 0.3, 0, 0]
    tracker.apply(
        [
            _reading(device="a", camera="c", seq=1, probabilities=sure_jam, capture_time_ms=t),
            _reading(device="b", camera="c", seq=1, probabilities=unsure_free, capture_time_ms=t),
        ]
    )
    (segment,) = tracker.snapshot(now_ms())
    unsure_level = (0 * 0.4 + 1 * 0.3 + 2 * 0.3) / 4 * 10  # 2.25
    assert segment.level == round((1.0 * 10 + 0.4 * unsure_level) / 1.4, 3)


def test_city_index_weighs_length_and_road_class() -> None:
    city = {
        "ring": SegmentConfig(id="ring", name="Ring", road_class="motorway", length_m=2000),
        "lane": SegmentConfig(id="lane", name="Lane", road_class="local", length_m=500),
    }
    tracker = CityTracker(STALE_MS)
    tracker.apply(
        [
            _reading(device="a", segment="ring", probabilities=[0, 0, 0, 0, 1.0]),
            _reading(device="b", segment="lane", probabilities=[1.0, 0, 0, 0, 0]),
        ]
    )
    segments = tracker.snapshot(now_ms())
    # 2000 m x 3.0 at level 10 against 500 m x 1.0 at level 0.
    assert congestion_index(segments, city) == round(6000 * 10 / 6500, 3)
    assert segments_per_band(segments) == {"severe": 1, "free": 1}


def test_history_is_kept_per_interval_and_pruned(store_target: StoreTarget) -> None:
    store = store_target.open(history_interval_ms=60_000)
    tracker = CityTracker(STALE_MS)
    base = (now_ms() // 60_000 - 10) * 60_000
    readings = [
        _reading(seq=1, capture_time_ms=base + 1_000, probabilities=[1.0, 0, 0, 0, 0]),
        _reading(seq=2, capture_time_ms=base + 2_000, probabilities=[0, 0, 1.0, 0, 0]),
        _reading(seq=3, capture_time_ms=base + 61_000, probabilities=[0, 0, 0, 0, 1.0]),
    ]
    store.write_batch(readings, tracker.apply)
    store.write_batch([_reading(seq=3)], tracker.apply)  # a duplicate adds nothing
    assert store.history("seg-1", base, base + 120_000) == [
        HistoryPoint(base, 2.5, 2),
        HistoryPoint(base + 60_000, 10.0, 1),
    ]
    assert store.history("seg-1", base + 30_000, base + 120_000) == [
        HistoryPoint(base + 60_000, 10.0, 1)
    ]
    # All segments in one read: the same points.
    assert store.histories(base, base + 120_000) == {
        "seg-1": store.history("seg-1", base, base + 120_000)
    }
    assert store.prune_history(base + 30_000) == 1
    assert store.history("seg-1", 0, base + 120_000) == [HistoryPoint(base + 60_000, 10.0, 1)]
    store.close()


JAMMED = [0, 0, 0, 0, 1.0]
FREE = [1.0, 0, 0, 0, 0]
IN_1990 = 631_152_000_000


def test_impossible_and_ancient_reports_register_nothing(store_target: StoreTarget) -> None:
    store = store_target.open()
    tracker = CityTracker(STALE_MS)
    t = now_ms()
    window_after_capture = report(
        device="dev-x", capture_time_ms=t - 60_000, window_start_ms=t - 60_000 + 3_600_000
    )
    from_1990 = report(device="dev-y", capture_time_ms=IN_1990)
    result = store.write_batch(
        [_decode(window_after_capture, t), _decode(from_1990, t)], tracker.apply
    )
    assert (result.accepted, result.rejected, result.segments) == ([], 2, [])
    assert tracker.snapshot(now_ms()) == []
    store.close()
    assert store_target.rows("SELECT * FROM devices") == []
    assert store_target.rows("SELECT * FROM reports") == []
    assert store_target.rows("SELECT * FROM segments") == []
    assert store_target.rows("SELECT topic, code FROM dead_letters ORDER BY id") == [
        ("roadsense/v1/dev-x/cam1/congestion", "bad_time"),
        ("roadsense/v1/dev-y/cam1/congestion", "too_late"),
    ]


def test_late_reports_are_history_never_current_state(store_target: StoreTarget) -> None:
    store = store_target.open(history_interval_ms=60_000)
    tracker = CityTracker(STALE_MS)
    t = now_ms()
    three_days_old = t - 3 * 24 * 3_600_000
    # Even a lateness limit that lets 1990 in never makes it current state.
    fifty_years = 50 * 365 * 24 * 3_600_000
    late = [
        _decode(report(seq=1, capture_time_ms=IN_1990), t, max_late_ms=fifty_years),
        _decode(report(seq=2, capture_time_ms=three_days_old), t),
    ]
    result = store.write_batch(late, tracker.apply)
    assert ([r.seq for r in result.accepted], result.segments) == ([1, 2], [])
    assert tracker.snapshot(t) == []

    # On time: the newest capture becomes current; an older one that arrives after it does not.
    on_time = [
        _reading(t, seq=3, capture_time_ms=t - 1000, probabilities=JAMMED),
        _reading(t, seq=4, capture_time_ms=t - 5000, probabilities=FREE),
    ]
    (segment,) = store.write_batch(on_time, tracker.apply).segments
    assert (segment.level, segment.updated_ms, segment.reports) == (10.0, t - 1000, 1)
    # Captured after the current one but delivered later than the staleness limit: history.
    backlog = _reading(t + STALE_MS + 1, seq=5, capture_time_ms=t, probabilities=FREE)
    assert store.write_batch([backlog], tracker.apply).segments == []
    store.close()

    assert store_target.rows("SELECT seq, capture_time_ms, level FROM reports ORDER BY seq") == [
        (1, IN_1990, 5.0),
        (2, three_days_old, 5.0),
        (3, t - 1000, 10.0),
        (4, t - 5000, 0.0),
        (5, t, 0.0),
    ]
    assert store_target.rows(
        "SELECT segment_id, level, label, updated_ms, last_changed_ms, camera_ids, reports "
        "FROM segments"
    ) == [("seg-1", 10.0, "jammed", t - 1000, t - 1000, '["dev-1/cam1"]', 1)]
    history = store_target.rows("SELECT start_ms, reports FROM segment_history ORDER BY start_ms")
    assert [start for start, _ in history][:2] == [
        IN_1990 // 60_000 * 60_000,
        three_days_old // 60_000 * 60_000,
    ]

    reopened = store_target.open()
    assert [r.seq for r in reopened.latest_readings()] == [5]
    assert [r.seq for r in reopened.latest_readings(STALE_MS)] == [3]
    restored = CityTracker(STALE_MS)
    restored.load(reopened.segments(), reopened.latest_readings(STALE_MS))
    assert restored.snapshot(t) == tracker.snapshot(t)
    reopened.close()


def test_repeats_of_one_bad_message_are_counted_not_stored_again(
    store_target: StoreTarget,
) -> None:
    store = store_target.open()
    tracker = CityTracker(STALE_MS)
    topic = "roadsense/v1/dev-1/cam1/congestion"
    for batch in range(3):
        repeats = [
            Rejected(topic, f"bad {batch}.{i}", b"\x01\x02", 1000 * batch + i) for i in (0, 1)
        ]
        other = Rejected(topic, "other", b"\x03", 5, code="bad_protobuf")
        store.write_batch([*repeats, other], tracker.apply)
    assert store.dead_letters() == [(topic, "bad 2.1"), (topic, "other")]
    assert store.dead_letter_codes() == {"invalid": 6, "bad_protobuf": 3}
    store.close()
    assert store_target.rows(
        "SELECT topic, code, payload, repeats, received_ms, last_received_ms FROM dead_letters "
        "ORDER BY id"
    ) == [
        (topic, "invalid", b"\x01\x02", 6, 0, 2001),
        (topic, "bad_protobuf", b"\x03", 3, 5, 5),
    ]


def test_the_sqlite_repeat_migration_folds_existing_copies(tmp_path: Path) -> None:
    # SQLite stores from before repeat counting exist; PostgreSQL ones start with it.
    path = tmp_path / "city.sqlite"
    db = open_database(path)
    migrate(db, [m for m in MIGRATIONS if m.name != "0008_dead_letter_repeats"])
    for received, payload in [(10, b"a"), (20, b"b"), (30, b"a"), (40, b"a")]:
        db.execute(
            "INSERT INTO dead_letters (received_ms, topic, reason, payload, code) "
            "VALUES (?, 't', 'r', ?, 'bad_field')",
            [received, payload],
        )
    db.conn.commit()
    db.close()
    SqliteStore(path).close()
    assert sqlite3.connect(path).execute(
        "SELECT payload, repeats, received_ms, last_received_ms, message_sha256 FROM dead_letters "
        "ORDER BY id"
    ).fetchall() == [
        (b"a", 3, 10, 40, hashlib.sha256(b"t\0a").hexdigest()),
        (b"b", 1, 20, 20, hashlib.sha256(b"t\0b").hexdigest()),
    ]


def test_many_segments_are_read_back_and_fused_across_writers(store_target: StoreTarget) -> None:
    """More segments than one query reads at a time (SQLite: 500 ids an IN list)."""
    store = store_target.open()
    first, second = CityTracker(STALE_MS), CityTracker(STALE_MS)
    t = now_ms()
    segments = [f"many-{i:04d}" for i in range(1201)]
    batch = [
        _reading(device=f"dev-{i}", seq=1, segment=s, capture_time_ms=t)
        for i, s in enumerate(segments)
    ]
    store.write_batch(batch, first.apply, first)
    wanted = [*segments[::2], "many-unknown"]
    assert [s.segment_id for s in store.segments(wanted)] == segments[::2]
    # A second writer adds a camera to every segment: each is fused from both.
    more = [
        _reading(device=f"other-{i}", seq=1, segment=s, capture_time_ms=t + 1)
        for i, s in enumerate(segments)
    ]
    store.write_batch(more, second.apply, second)
    stored = store.segments(segments)
    assert len(stored) == 1201
    assert {len(s.camera_ids) for s in stored} == {2}
    assert stored[1200].camera_ids == ("dev-1200/cam1", "other-1200/cam1")
    store.close()
