"""Traffic series from CSV: one row per time step, one column per segment.

The header names the segments, optionally after a first ``date`` column.
``0`` means "no observation": it is masked, never learned as a speed.
Timestamps come from the ``date`` column or from a start time and interval.
A weather CSV, when given, is aligned row for row (city-wide codes; a file
with one column per segment must be constant across each row).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from roadsense.core.errors import RoadSenseError

DATE_FORMATS = ("%m/%d/%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")


class SeriesError(RoadSenseError):
    """A series or weather file cannot be read as the forecaster expects."""


@dataclass(frozen=True)
class Series:
    """Values (time x segment), which of them were observed, and their times."""

    segment_ids: list[str]
    values: npt.NDArray[np.float64]
    observed: npt.NDArray[np.bool_]
    times: list[datetime]
    weather: npt.NDArray[np.int64] | None = None
    time_zone: str = "UTC"
    """Zone the file's clock times were read in (the model's features follow it)."""

    @property
    def steps(self) -> int:
        """Number of time steps."""
        return int(self.values.shape[0])


def _parse_time(text: str, path: Path, row: int, zone: tzinfo) -> datetime:
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=zone)
        except ValueError:
            continue
    raise SeriesError(f"{path}: row {row}: date {text!r} is not a time like 1/31/2015 23:45")


def load_series(
    path: str | Path,
    *,
    weather_path: str | Path | None = None,
    start: datetime | None = None,
    interval_min: float | None = None,
    time_zone: str = "UTC",
) -> Series:
    """Read a series CSV (and optional weather CSV); errors name file, row and column.

    Times without an offset (the ``date`` column, ``start``) are clock times in
    ``time_zone`` (an IANA name such as ``Asia/Shanghai``; default UTC).
    """
    path = Path(path)
    try:
        zone: tzinfo = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SeriesError(
            f"unknown time zone {time_zone!r} (use an IANA name like Europe/Paris)"
        ) from None
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as err:
        raise SeriesError(f"{path}: cannot read: {err.strerror}") from err
    if len(rows) < 2:
        raise SeriesError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    has_date = header[0].lower() == "date"
    segment_ids = header[1:] if has_date else header
    if not segment_ids or any(not s for s in segment_ids):
        raise SeriesError(f"{path}: the header must name every segment column")
    if len(set(segment_ids)) != len(segment_ids):
        raise SeriesError(f"{path}: segment ids repeat in the header")
    width = len(header)
    values = np.zeros((len(rows) - 1, len(segment_ids)))
    times: list[datetime] = []
    for index, row in enumerate(rows[1:]):
        line = index + 2
        if len(row) != width:
            raise SeriesError(f"{path}: row {line} has {len(row)} cells, the header {width}")
        cells = row[1:] if has_date else row
        if has_date:
            times.append(_parse_time(row[0], path, line, zone))
        for column, cell in enumerate(cells):
            try:
                value = float(cell) if cell.strip() else 0.0
            except ValueError:
                raise SeriesError(
                    f"{path}: row {line}, segment {segment_ids[column]}: {cell!r} is not a number"
                ) from None
            if not np.isfinite(value) or value < 0:
                raise SeriesError(
                    f"{path}: row {line}, segment {segment_ids[column]}: {cell!r} is not a "
                    "finite value >= 0"
                )
            values[index, column] = value
    if not has_date:
        if start is None or interval_min is None:
            raise SeriesError(
                f"{path}: no date column; give the start time and interval (--start, "
                "--interval-min)"
            )
        step = timedelta(minutes=interval_min)
        start = start if start.tzinfo else start.replace(tzinfo=zone)
        times = [start + i * step for i in range(values.shape[0])]
    weather = load_weather(weather_path, values.shape[0]) if weather_path else None
    return Series(segment_ids, values, values > 0, times, weather, time_zone)


def load_weather(path: str | Path, steps: int) -> npt.NDArray[np.int64]:
    """City-wide weather codes, one per step (a per-segment file must be constant per row)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except OSError as err:
        raise SeriesError(f"{path}: cannot read: {err.strerror}") from err
    if len(rows) != steps:
        raise SeriesError(f"{path}: {len(rows)} weather rows for {steps} series rows")
    codes = np.zeros(steps, dtype=np.int64)
    for index, row in enumerate(rows):
        if len(set(cell.strip() for cell in row)) != 1:
            raise SeriesError(f"{path}: row {index + 1}: weather differs across columns")
        try:
            codes[index] = int(row[0])
        except ValueError:
            raise SeriesError(
                f"{path}: row {index + 1}: {row[0]!r} is not a weather code"
            ) from None
    return codes
