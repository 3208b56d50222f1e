"""The cloud store's schema: named migrations, applied in order, never edited once released.

A new table or index is a new migration at the end of ``MIGRATIONS``; ``roadsense cloud
check`` reports a store that has migrations this version does not know.
"""

from __future__ import annotations

import hashlib

from sqlite_utils import Database

from roadsense.cloud.city.rows import MEASUREMENT_SCHEMA
from roadsense.core.sqlite import Migration
from roadsense.proto.model_kinds import CONGESTION


def _schema_v1(db: Database) -> None:
    db.execute(
        """CREATE TABLE reports (
            id INTEGER PRIMARY KEY,
            device_id TEXT NOT NULL, seq INTEGER NOT NULL,
            camera_id TEXT NOT NULL, segment_id TEXT NOT NULL,
            capture_time_ms INTEGER NOT NULL, window_start_ms INTEGER NOT NULL,
            received_ms INTEGER NOT NULL, model_version TEXT NOT NULL,
            labels TEXT NOT NULL, probabilities TEXT NOT NULL,
            frames_in_window INTEGER NOT NULL, level REAL NOT NULL)"""
    )
    db.execute("CREATE UNIQUE INDEX reports_device_seq ON reports (device_id, seq)")
    db.execute("CREATE INDEX reports_segment_time ON reports (segment_id, capture_time_ms)")
    db.execute(
        """CREATE TABLE segments (
            segment_id TEXT PRIMARY KEY, level REAL NOT NULL, label TEXT NOT NULL,
            updated_ms INTEGER NOT NULL, last_changed_ms INTEGER NOT NULL,
            camera_ids TEXT NOT NULL, reports INTEGER NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY, online INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
            agent_version TEXT NOT NULL DEFAULT '', model_version TEXT NOT NULL DEFAULT '',
            camera_ids TEXT NOT NULL DEFAULT '[]')"""
    )
    db.execute(
        """CREATE TABLE health (
            id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, time_ms INTEGER NOT NULL,
            received_ms INTEGER NOT NULL, body TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, topic TEXT NOT NULL,
            reason TEXT NOT NULL, payload BLOB NOT NULL)"""
    )


def _dead_letter_codes(db: Database) -> None:
    db.execute("ALTER TABLE dead_letters ADD COLUMN code TEXT NOT NULL DEFAULT 'invalid'")
    db.execute("CREATE INDEX dead_letters_code ON dead_letters (code)")


def _segment_history(db: Database) -> None:
    db.execute(
        """CREATE TABLE segment_history (
            segment_id TEXT NOT NULL, start_ms INTEGER NOT NULL,
            level_sum REAL NOT NULL, reports INTEGER NOT NULL,
            PRIMARY KEY (segment_id, start_ms))"""
    )


def _feeds(db: Database) -> None:
    db.execute(
        """CREATE TABLE observations (
            segment_id TEXT NOT NULL, time_ms INTEGER NOT NULL, source TEXT NOT NULL,
            value REAL NOT NULL, unit TEXT NOT NULL, received_ms INTEGER NOT NULL,
            PRIMARY KEY (segment_id, time_ms, source))"""
    )
    db.execute(
        """CREATE TABLE weather (
            time_ms INTEGER NOT NULL, source TEXT NOT NULL, code TEXT NOT NULL,
            received_ms INTEGER NOT NULL, PRIMARY KEY (time_ms, source))"""
    )


def _forecasts(db: Database) -> None:
    db.execute(
        """CREATE TABLE forecasts (
            segment_id TEXT NOT NULL, origin_ms INTEGER NOT NULL, horizon INTEGER NOT NULL,
            interval_ms INTEGER NOT NULL, target_ms INTEGER NOT NULL, value REAL NOT NULL,
            observed_probability REAL NOT NULL, model_version TEXT NOT NULL,
            newest_input_ms INTEGER NOT NULL, missing_fraction REAL NOT NULL,
            made_ms INTEGER NOT NULL, scored INTEGER NOT NULL DEFAULT 0, actual REAL,
            PRIMARY KEY (segment_id, origin_ms, horizon))"""
    )
    db.execute("CREATE INDEX forecasts_unscored ON forecasts (scored, target_ms)")
    db.execute("CREATE INDEX observations_time ON observations (time_ms)")


def _fleet_registry(db: Database) -> None:
    db.execute(
        """CREATE TABLE fleet_registry (
            device_id TEXT PRIMARY KEY, enrolled_ms INTEGER NOT NULL DEFAULT 0,
            revoked_ms INTEGER, certificate_serial TEXT NOT NULL DEFAULT '',
            revoke_reason TEXT NOT NULL DEFAULT '')"""
    )
    db.execute(
        """CREATE TABLE enrollment_tokens (
            token_sha256 TEXT PRIMARY KEY, device_id TEXT, created_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL, uses_left INTEGER NOT NULL)"""
    )


def _history_by_time(db: Database) -> None:
    # The dashboard reads all segments' recent history at once; pruning deletes by time.
    db.execute("CREATE INDEX segment_history_start ON segment_history (start_ms)")


def message_sha256(topic: str, payload: bytes) -> str:
    """Identity of a dead-lettered message: its topic and the payload bytes kept."""
    return hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()


def _dead_letter_repeats(db: Database) -> None:
    # One row per distinct bad message and problem: repeats count up instead of adding rows.
    db.execute("ALTER TABLE dead_letters ADD COLUMN message_sha256 TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE dead_letters ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE dead_letters ADD COLUMN last_received_ms INTEGER NOT NULL DEFAULT 0")
    last = -1
    while rows := db.execute(  # in chunks: payloads may be large and many
        "SELECT id, topic, payload FROM dead_letters WHERE id > ? ORDER BY id LIMIT 1000", [last]
    ).fetchall():
        db.conn.executemany(
            "UPDATE dead_letters SET message_sha256 = ?, last_received_ms = received_ms "
            "WHERE id = ?",
            [(message_sha256(topic, bytes(payload)), row_id) for row_id, topic, payload in rows],
        )
        last = rows[-1][0]
    # Keep the first row of each (message, code) with the copies' count and latest time.
    db.execute("CREATE TEMP TABLE folded (id INTEGER PRIMARY KEY, n INTEGER, last INTEGER)")
    db.execute(
        "INSERT INTO folded SELECT MIN(id), COUNT(*), MAX(received_ms) FROM dead_letters "
        "GROUP BY message_sha256, code"
    )
    db.execute(
        """UPDATE dead_letters SET
            repeats = (SELECT n FROM folded WHERE folded.id = dead_letters.id),
            last_received_ms = (SELECT last FROM folded WHERE folded.id = dead_letters.id)
           WHERE id IN (SELECT id FROM folded)"""
    )
    db.execute("DELETE FROM dead_letters WHERE id NOT IN (SELECT id FROM folded)")
    db.execute("DROP TABLE folded")
    db.execute("CREATE UNIQUE INDEX dead_letters_message ON dead_letters (message_sha256, code)")


def _model_registry(db: Database) -> None:
    db.execute(MODEL_RELEASES)


MODEL_RELEASES = """CREATE TABLE model_releases (
    version TEXT PRIMARY KEY, name TEXT NOT NULL, onnx_file TEXT NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT NOT NULL, card_sha256 TEXT NOT NULL,
    signature TEXT NOT NULL, published_ms INTEGER NOT NULL, published_by TEXT NOT NULL)"""
"""The model registry: one row per published release (the signature in hex)."""


def _rollouts(db: Database) -> None:
    for statement in ROLLOUT_SCHEMA:
        db.execute(
            statement.format(
                TEXT="TEXT NOT NULL", INT="INTEGER NOT NULL", REAL="REAL", ID="INTEGER PRIMARY KEY"
            )
        )


_ACTIVE_TEST = "state IN ('canary', 'promoting', 'paused')"
ROLLOUT_SCHEMA = (
    """CREATE TABLE rollouts (rollout_id {TEXT} PRIMARY KEY, model_version {TEXT},
        state {TEXT}, canary_percent {REAL} NOT NULL, stage {INT}, stage_started_ms {INT},
        created_ms {INT}, created_by {TEXT}, updated_ms {INT}, reason {TEXT},
        resume_state {TEXT}, evaluation_json {TEXT})""",
    "CREATE INDEX rollouts_state ON rollouts (state)",
    # At most one active rollout, whatever two operators start at the same moment.
    f"""CREATE UNIQUE INDEX rollouts_one_active ON rollouts (({_ACTIVE_TEST}))
        WHERE {_ACTIVE_TEST}""",
    """CREATE TABLE rollout_devices (rollout_id {TEXT}, device_id {TEXT}, stage {INT},
        previous_version {TEXT}, want_version {TEXT}, reported_version {TEXT},
        state {TEXT}, error {TEXT}, request_id {TEXT}, sent_ms {INT}, attempts {INT},
        updated_ms {INT}, PRIMARY KEY (rollout_id, device_id))""",
    """CREATE TABLE rollout_events (id {ID}, rollout_id {TEXT}, time_ms {INT},
        actor {TEXT}, from_state {TEXT}, to_state {TEXT}, reason {TEXT})""",
    "CREATE INDEX rollout_events_rollout ON rollout_events (rollout_id, id)",
    # The controller reads one device's recent health and reports at a time.
    "CREATE INDEX health_device_received ON health (device_id, received_ms)",
    "CREATE INDEX reports_device_time ON reports (device_id, capture_time_ms)",
)
"""Rollouts, their devices and transitions; the same statements in both stores' types."""


def _measurements(db: Database) -> None:
    for statement in MEASUREMENT_SCHEMA:
        db.execute(statement.format(TEXT="TEXT NOT NULL", INT="INTEGER NOT NULL", REAL="REAL"))


def _detector_rollouts(db: Database) -> None:
    for statement in DETECTOR_ROLLOUT_SCHEMA:
        db.execute(statement.format(TEXT="TEXT NOT NULL"))


DETECTOR_ROLLOUT_SCHEMA = (
    # Releases published before this were all classifiers: the registry refused others.
    f"ALTER TABLE model_releases ADD COLUMN kind {{TEXT}} DEFAULT '{CONGESTION}'",
    # A detector rollout's verdict reads one device's recent measurements at a time.
    "CREATE INDEX measurements_device_time ON measurements (device_id, capture_time_ms)",
)
"""Each release's kind (``roadsense.proto.model_kinds``), and what a detector rollout's
verdict reads, in both stores' types."""


MIGRATIONS = [
    Migration("0001_city_schema", _schema_v1),
    Migration("0002_dead_letter_codes", _dead_letter_codes),
    Migration("0003_segment_history", _segment_history),
    Migration("0004_feeds", _feeds),
    Migration("0005_forecasts", _forecasts),
    Migration("0006_fleet_registry", _fleet_registry),
    Migration("0007_history_by_time", _history_by_time),
    Migration("0008_dead_letter_repeats", _dead_letter_repeats),
    Migration("0009_model_registry", _model_registry),
    Migration("0010_rollouts", _rollouts),
    Migration("0011_measurements", _measurements),
    Migration("0012_detector_rollouts", _detector_rollouts),
]
