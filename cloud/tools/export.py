"""`roadsense forecast export`: the cloud's observations as a series CSV to retrain on.

Writes ``speeds.csv`` (a ``date`` column, then one column per segment, one row
per interval, the mean of the interval's observations, ``0`` where there was
none: the format ``roadsense forecast evaluate`` and ``roadsense train
forecaster`` read) and, when weather was fed, ``weather.csv`` aligned row for
row (the interval's newest code; the previous interval's code carried over an
interval without one).
"""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from roadsense.cloud.forecast.feeds import interval_means
from roadsense.core.errors import RoadSenseError

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class ExportError(RoadSenseError):
    """The store cannot be exported."""


@dataclass(frozen=True)
class ExportSummary:
    """What was written."""

    speeds: Path
    weather: Path | None
    segments: int
    rows: int
    observations: int


def export_series(
    db_path: Path, out_dir: Path, interval_ms: int, source: str | None = None
) -> ExportSummary:
    """Write the store's observations (of one source, or all) as series CSV files."""
    if not db_path.is_file():
        raise ExportError(f"{db_path}: no such cloud store")
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            where, args = ("WHERE source = ?", [source]) if source else ("", [])
            observations = db.execute(
                f"SELECT segment_id, time_ms, value FROM observations {where}", args
            ).fetchall()
            weather = db.execute(
                f"SELECT time_ms, code FROM weather {where} ORDER BY time_ms", args
            ).fetchall()
    except sqlite3.Error as err:
        raise ExportError(f"{db_path}: cannot read observations: {err}") from err
    if not observations:
        raise ExportError(
            f"{db_path}: no observations{f' from source {source!r}' if source else ''} to export"
        )
    segments = sorted({str(s) for s, _, _ in observations})
    column = {s: i for i, s in enumerate(segments)}
    first = min(int(t) for _, t, _ in observations) // interval_ms
    last = max(int(t) for _, t, _ in observations) // interval_ms
    rows = last - first + 1
    means = interval_means(
        ((str(s), int(t), float(v)) for s, t, v in observations),
        column,
        start_ms=first * interval_ms,
        interval_ms=interval_ms,
        intervals=rows,
    ).values
    out_dir.mkdir(parents=True, exist_ok=True)
    speeds = out_dir / "speeds.csv"
    with speeds.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", *segments])
        for row in range(rows):
            start = datetime.fromtimestamp((first + row) * interval_ms / 1000, tz=timezone.utc)
            writer.writerow([start.strftime(DATE_FORMAT), *(repr(float(v)) for v in means[row])])
    weather_path = _write_weather(out_dir, weather, first, rows, interval_ms)
    return ExportSummary(speeds, weather_path, len(segments), rows, len(observations))


def _write_weather(
    out_dir: Path, weather: list[tuple[int, str]], first: int, rows: int, interval_ms: int
) -> Path | None:
    if not weather:
        return None
    codes: list[str | None] = [None] * rows
    for time_ms, code in weather:
        row = int(time_ms) // interval_ms - first
        if 0 <= row < rows:
            codes[row] = str(code)
    known = next((c for c in codes if c is not None), None)
    if known is None:
        return None
    path = out_dir / "weather.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        current: str = known
        for interval_code in codes:
            if interval_code is not None:
                current = interval_code
            writer.writerow([current])
    return path
