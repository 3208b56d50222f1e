"""`roadsense cloud check`: is this configuration and its database fit to serve?"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from roadsense.cloud.config import CloudConfig
from roadsense.cloud.store.migrations import MIGRATIONS
from roadsense.cloud.store.open import redacted
from roadsense.core.errors import ModelLoadError, StoreError
from roadsense.models.forecast.runtime import OnnxForecaster


@dataclass
class CheckReport:
    """What the check found."""

    problems: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing stops the service from starting."""
        return not self.problems


def check(config: CloudConfig) -> CheckReport:
    """Check files the configuration names and the store, without changing anything."""
    report = CheckReport()
    report.facts["segments_configured"] = len(config.segments)
    report.facts["tokens"] = len(config.grpc.auth.tokens)
    if not config.grpc.auth.tokens:
        report.facts["warning"] = "no tokens: the gRPC API is open to anyone who can reach it"
    tls = config.grpc.tls
    if tls is not None:
        for path in (tls.cert_file, tls.key_file, tls.client_ca_file):
            if path is not None and not path.is_file():
                report.problems.append(f"gRPC TLS file not found: {path}")
    if config.mqtt.tls is not None:
        for path in (config.mqtt.tls.ca_file, config.mqtt.tls.cert_file, config.mqtt.tls.key_file):
            if path is not None and not path.is_file():
                report.problems.append(f"MQTT TLS file not found: {path}")
    if config.forecast.enabled:
        _check_forecaster(config.forecast.model, report)
    if config.store.postgres_url is None:
        _check_store(config.store.path, report)
    else:
        _check_postgres(config.store.postgres_url, report)
    return report


def _check_forecaster(path: Path, report: CheckReport) -> None:
    try:
        model = OnnxForecaster(path)
    except ModelLoadError as err:
        report.problems.append(f"forecaster: {err}")
        return
    report.facts["forecaster"] = f"version {model.version}, {len(model.card.segment_ids)} segments"


def _check_store(path: Path, report: CheckReport) -> None:
    if not path.exists():
        report.facts["store"] = f"{path} does not exist yet; it is created at first start"
        if not path.parent.exists():
            report.problems.append(f"store folder does not exist: {path.parent}")
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            applied = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
            reports = db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
    except sqlite3.Error as err:
        report.problems.append(f"store {path} cannot be read: {err}")
        return
    if integrity != "ok":
        report.problems.append(f"store {path} failed its integrity check: {integrity}")
    _check_migrations(str(path), applied, [m.name for m in MIGRATIONS], report)
    report.facts["reports_stored"] = reports


def _check_postgres(url: str, report: CheckReport) -> None:
    try:
        from roadsense.cloud.store.postgres import inspect_postgres
        from roadsense.cloud.store.postgres_migrations import POSTGRES_MIGRATIONS
    except ImportError as err:
        report.problems.append(f"a PostgreSQL store needs psycopg (the 'cloud' extra): {err.msg}")
        return
    try:
        applied, reports = inspect_postgres(url)
    except StoreError as err:
        report.problems.append(str(err))
        return
    _check_migrations(redacted(url), applied, [m.name for m in POSTGRES_MIGRATIONS], report)
    report.facts["reports_stored"] = reports if reports is not None else 0


def _check_migrations(where: str, applied: set[str], known: list[str], report: CheckReport) -> None:
    unknown = sorted(applied - set(known))
    if unknown:
        report.problems.append(
            f"store {where} has migrations this version does not know: {', '.join(unknown)} "
            "(it was written by a newer RoadSense)"
        )
    report.facts["store"] = where
    report.facts["migrations_pending"] = [m for m in known if m not in applied]
