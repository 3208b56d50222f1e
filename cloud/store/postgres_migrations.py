"""The PostgreSQL store's schema: its own named migrations, applied in order, never edited.

The first one is the SQLite store's schema as of its migration 0008, in PostgreSQL types:
64-bit integers for times and counts, bytea for payloads, and text in the "C" collation so
both stores order ids the same way whatever the server's locale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from roadsense.cloud.city.rows import MEASUREMENT_SCHEMA
from roadsense.cloud.store.migrations import DETECTOR_ROLLOUT_SCHEMA, ROLLOUT_SCHEMA
from roadsense.core.timeutil import now_ms

logger = logging.getLogger(__name__)

MIGRATION_LOCK = 0x5253_4D49_4752  # "RSMIGR": one process migrates at a time
TEXT = 'TEXT COLLATE "C" NOT NULL'
ID = "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"


@dataclass(frozen=True)
class PostgresMigration:
    """One named schema change: statements run in one transaction."""

    name: str
    statements: tuple[str, ...]


_CITY_SCHEMA = (
    f"""CREATE TABLE reports ({ID},
        device_id {TEXT}, seq BIGINT NOT NULL, camera_id {TEXT}, segment_id {TEXT},
        capture_time_ms BIGINT NOT NULL, window_start_ms BIGINT NOT NULL,
        received_ms BIGINT NOT NULL, model_version {TEXT}, labels {TEXT},
        probabilities {TEXT}, frames_in_window BIGINT NOT NULL,
        level DOUBLE PRECISION NOT NULL)""",
    "CREATE UNIQUE INDEX reports_device_seq ON reports (device_id, seq)",
    "CREATE INDEX reports_segment_time ON reports (segment_id, capture_time_ms)",
    f"""CREATE TABLE segments (segment_id {TEXT} PRIMARY KEY,
        level DOUBLE PRECISION NOT NULL, label {TEXT}, updated_ms BIGINT NOT NULL,
        last_changed_ms BIGINT NOT NULL, camera_ids {TEXT}, reports BIGINT NOT NULL)""",
    f"""CREATE TABLE devices (device_id {TEXT} PRIMARY KEY, online INTEGER NOT NULL,
        last_seen_ms BIGINT NOT NULL, agent_version {TEXT} DEFAULT '',
        model_version {TEXT} DEFAULT '', camera_ids {TEXT} DEFAULT '[]')""",
    f"""CREATE TABLE health ({ID}, device_id {TEXT}, time_ms BIGINT NOT NULL,
        received_ms BIGINT NOT NULL, body {TEXT})""",
    f"""CREATE TABLE dead_letters ({ID}, received_ms BIGINT NOT NULL, topic {TEXT},
        reason {TEXT}, payload BYTEA NOT NULL, code {TEXT} DEFAULT 'invalid',
        message_sha256 {TEXT}, repeats BIGINT NOT NULL DEFAULT 1,
        last_received_ms BIGINT NOT NULL)""",
    "CREATE INDEX dead_letters_code ON dead_letters (code)",
    "CREATE UNIQUE INDEX dead_letters_message ON dead_letters (message_sha256, code)",
    f"""CREATE TABLE segment_history (segment_id {TEXT}, start_ms BIGINT NOT NULL,
        level_sum DOUBLE PRECISION NOT NULL, reports BIGINT NOT NULL,
        PRIMARY KEY (segment_id, start_ms))""",
    "CREATE INDEX segment_history_start ON segment_history (start_ms)",
    f"""CREATE TABLE observations (segment_id {TEXT}, time_ms BIGINT NOT NULL,
        source {TEXT}, value DOUBLE PRECISION NOT NULL, unit {TEXT},
        received_ms BIGINT NOT NULL, PRIMARY KEY (segment_id, time_ms, source))""",
    "CREATE INDEX observations_time ON observations (time_ms)",
    f"""CREATE TABLE weather (time_ms BIGINT NOT NULL, source {TEXT}, code {TEXT},
        received_ms BIGINT NOT NULL, PRIMARY KEY (time_ms, source))""",
    f"""CREATE TABLE forecasts (segment_id {TEXT}, origin_ms BIGINT NOT NULL,
        horizon INTEGER NOT NULL, interval_ms BIGINT NOT NULL, target_ms BIGINT NOT NULL,
        value DOUBLE PRECISION NOT NULL, observed_probability DOUBLE PRECISION NOT NULL,
        model_version {TEXT}, newest_input_ms BIGINT NOT NULL,
        missing_fraction DOUBLE PRECISION NOT NULL, made_ms BIGINT NOT NULL,
        scored INTEGER NOT NULL DEFAULT 0, actual DOUBLE PRECISION,
        PRIMARY KEY (segment_id, origin_ms, horizon))""",
    "CREATE INDEX forecasts_unscored ON forecasts (scored, target_ms)",
    f"""CREATE TABLE fleet_registry (device_id {TEXT} PRIMARY KEY,
        enrolled_ms BIGINT NOT NULL DEFAULT 0, revoked_ms BIGINT,
        certificate_serial {TEXT} DEFAULT '', revoke_reason {TEXT} DEFAULT '')""",
    f"""CREATE TABLE enrollment_tokens (token_sha256 {TEXT} PRIMARY KEY,
        device_id TEXT COLLATE "C", created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL,
        uses_left BIGINT NOT NULL)""",
)

_MODEL_REGISTRY = (
    f"""CREATE TABLE model_releases (version {TEXT} PRIMARY KEY, name {TEXT},
        onnx_file {TEXT}, size BIGINT NOT NULL, sha256 {TEXT}, card_sha256 {TEXT},
        signature {TEXT}, published_ms BIGINT NOT NULL, published_by {TEXT})""",
)

_ROLLOUTS = tuple(
    statement.format(
        TEXT=TEXT,
        INT="BIGINT NOT NULL",
        REAL="DOUBLE PRECISION",
        ID="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    )
    for statement in ROLLOUT_SCHEMA
)

_MEASUREMENTS = tuple(
    statement.format(TEXT=TEXT, INT="BIGINT NOT NULL", REAL="DOUBLE PRECISION")
    for statement in MEASUREMENT_SCHEMA
)

POSTGRES_MIGRATIONS = [
    PostgresMigration("0001_city_schema", _CITY_SCHEMA),
    PostgresMigration("0002_model_registry", _MODEL_REGISTRY),
    PostgresMigration("0003_rollouts", _ROLLOUTS),
    PostgresMigration("0004_measurements", _MEASUREMENTS),
    PostgresMigration(
        "0005_detector_rollouts", tuple(s.format(TEXT=TEXT) for s in DETECTOR_ROLLOUT_SCHEMA)
    ),
]


def migrate_postgres(
    conn: psycopg.Connection[Any],
    migrations: list[PostgresMigration] = POSTGRES_MIGRATIONS,
) -> list[str]:
    """Apply the migrations not yet recorded in ``_migrations``; return their names.

    A transaction-scoped advisory lock makes processes that start together take turns.
    """
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ms BIGINT)"
        )
        done = {row[0] for row in conn.execute("SELECT name FROM _migrations").fetchall()}
        for migration in migrations:
            if migration.name in done:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO _migrations (name, applied_ms) VALUES (%s, %s)",
                [migration.name, now_ms()],
            )
            applied.append(migration.name)
    for name in applied:
        logger.info("applied migration %s to the PostgreSQL store", name)
    return applied
