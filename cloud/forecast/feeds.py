"""City feeds: per-segment observations and weather pushed by trusted clients.

Each item of a batch is checked on its own; good items are stored even when
others in the same batch are refused, and every refusal names the item (its
index) and the field that was wrong, and why. Observations carry a unit of
``UNIT_RANGES`` and a finite value within its range; weather a short code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from roadsense.proto.topics import is_identifier
from roadsense.proto.v1 import city_pb2

MAX_BATCH = 10_000


@dataclass(frozen=True)
class IntervalMeans:
    """Observations averaged per (interval, segment)."""

    values: npt.NDArray[np.float64]
    """intervals x segments: the mean, 0 where nothing was observed"""
    observed: npt.NDArray[np.bool_]
    """intervals x segments: whether anything was observed"""
    newest_ms: npt.NDArray[np.int64]
    """segments: time of the newest observation (0: none)"""


def interval_means(
    observations: Iterable[tuple[str, int, float]],
    column: Mapping[str, int],
    *,
    start_ms: int,
    interval_ms: int,
    intervals: int,
) -> IntervalMeans:
    """Average (segment, time, value) rows into ``intervals`` intervals from ``start_ms``.

    Segments not in ``column`` and times outside the range are left out.
    """
    sums = np.zeros((intervals, len(column)))
    counts = np.zeros((intervals, len(column)), dtype=np.int64)
    newest = np.zeros(len(column), dtype=np.int64)
    for segment, time_ms, value in observations:
        index = column.get(segment)
        row = (int(time_ms) - start_ms) // interval_ms
        if index is None or not 0 <= row < intervals:
            continue
        sums[row, index] += float(value)
        counts[row, index] += 1
        newest[index] = max(newest[index], int(time_ms))
    observed = counts > 0
    return IntervalMeans(np.where(observed, sums / np.maximum(counts, 1), 0.0), observed, newest)


@dataclass(frozen=True)
class ObservationRecord:
    """One accepted measurement of a segment."""

    segment_id: str
    time_ms: int
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class WeatherRecord:
    """City-wide weather at a time."""

    time_ms: int
    code: str
    source: str


UNIT_RANGES: dict[str, tuple[float, float]] = {
    "km/h": (0.0, 300.0),
    "mph": (0.0, 190.0),
    "m/s": (0.0, 85.0),
    "veh/h": (0.0, 20_000.0),
    "%": (0.0, 100.0),
}
"""The units an observation may carry and the values each allows: speeds, flow over all
lanes of a segment, occupancy in percent."""
MAX_SOURCE_CHARS = 128
MAX_CODE_CHARS = 32
_WEATHER_CODE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_CODE_CHARS - 1}}}")
SHOWN_CHARS = 40
"""A refusal quotes at most this many characters of a bad value (escapes counted)."""


def _quoted(text: str) -> str:
    shown = text[:SHOWN_CHARS]
    while len(repr(shown)) > SHOWN_CHARS + 2:  # escapes count too: the quote stays short
        shown = shown[:-1]
    return repr(shown) if shown == text else f"{shown!r}... ({len(text)} characters)"


def _time_problem(time_ms: int, now_ms: int, max_future_ms: int) -> str | None:
    if time_ms <= 0:
        return "time_ms is missing"
    if time_ms > now_ms + max_future_ms:
        return f"time_ms is {(time_ms - now_ms) / 1000:.1f} s in the future"
    return None


def _source_problem(source: str) -> str | None:
    if not source:
        return "source is missing"
    if len(source) > MAX_SOURCE_CHARS or not source.isprintable():
        return (
            f"source {_quoted(source)} is not a name of at most {MAX_SOURCE_CHARS} "
            "printable characters"
        )
    return None


def _observation_problem(item: city_pb2.Observation, now_ms: int, max_future_ms: int) -> str | None:
    if not is_identifier(item.segment_id):
        return f"segment_id {_quoted(item.segment_id)} is not a valid identifier"
    time_problem = _time_problem(item.time_ms, now_ms, max_future_ms)
    if time_problem:
        return time_problem
    if not item.unit:
        return "unit is missing"
    limits = UNIT_RANGES.get(item.unit)
    if limits is None:
        return f"unit {_quoted(item.unit)} is not one of {', '.join(UNIT_RANGES)}"
    if not math.isfinite(item.value):
        return "value is not a finite number"
    low, high = limits
    if not low <= item.value <= high:
        return f"value {item.value:g} {item.unit} is outside {low:g}..{high:g} {item.unit}"
    return _source_problem(item.source)


def check_observations(
    items: list[city_pb2.Observation], now_ms: int, max_future_ms: int
) -> tuple[list[ObservationRecord], list[tuple[int, str]]]:
    """(accepted records, [(index, reason)] refused); each reason starts with the field."""
    accepted: list[ObservationRecord] = []
    refused: list[tuple[int, str]] = []
    for index, item in enumerate(items):
        problem = _observation_problem(item, now_ms, max_future_ms)
        if problem:
            refused.append((index, problem))
            continue
        accepted.append(
            ObservationRecord(item.segment_id, item.time_ms, item.value, item.unit, item.source)
        )
    return accepted, refused


def _weather_problem(
    item: city_pb2.WeatherObservation, now_ms: int, max_future_ms: int
) -> str | None:
    time_problem = _time_problem(item.time_ms, now_ms, max_future_ms)
    if time_problem:
        return time_problem
    if not item.code:
        return "code is missing"
    if not _WEATHER_CODE.fullmatch(item.code):
        return (
            f"code {_quoted(item.code)} is not a weather code: 1 to {MAX_CODE_CHARS} letters, "
            "digits, '_', '.' or '-'"
        )
    return _source_problem(item.source)


def check_weather(
    items: list[city_pb2.WeatherObservation], now_ms: int, max_future_ms: int
) -> tuple[list[WeatherRecord], list[tuple[int, str]]]:
    """(accepted records, [(index, reason)] refused); each reason starts with the field."""
    accepted: list[WeatherRecord] = []
    refused: list[tuple[int, str]] = []
    for index, item in enumerate(items):
        problem = _weather_problem(item, now_ms, max_future_ms)
        if problem:
            refused.append((index, problem))
            continue
        accepted.append(WeatherRecord(item.time_ms, item.code, item.source))
    return accepted, refused
