"""City feeds: per-segment observations and weather pushed by trusted clients.

Each item of a batch is checked on its own; good items are stored even when
others in the same batch are refused, and every refusal names the item and
what was wrong with it.
"""

from __future__ import annotations

import math
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


def _time_problem(time_ms: int, now_ms: int, max_future_ms: int) -> str | None:
    if time_ms <= 0:
        return "time_ms is missing"
    if time_ms > now_ms + max_future_ms:
        return f"time_ms is {(time_ms - now_ms) / 1000:.1f} s in the future"
    return None


def check_observations(
    items: list[city_pb2.Observation], now_ms: int, max_future_ms: int
) -> tuple[list[ObservationRecord], list[tuple[int, str]]]:
    """(accepted records, [(index, reason)] refused)."""
    accepted: list[ObservationRecord] = []
    refused: list[tuple[int, str]] = []
    for index, item in enumerate(items):
        problem = _time_problem(item.time_ms, now_ms, max_future_ms)
        if not is_identifier(item.segment_id):
            problem = f"segment_id {item.segment_id!r} is not a valid identifier"
        elif not math.isfinite(item.value):
            problem = "value is not a finite number"
        elif not item.unit:
            problem = "unit is missing"
        elif not item.source:
            problem = "source is missing"
        if problem:
            refused.append((index, problem))
            continue
        accepted.append(
            ObservationRecord(item.segment_id, item.time_ms, item.value, item.unit, item.source)
        )
    return accepted, refused


def check_weather(
    items: list[city_pb2.WeatherObservation], now_ms: int, max_future_ms: int
) -> tuple[list[WeatherRecord], list[tuple[int, str]]]:
    """(accepted records, [(index, reason)] refused)."""
    accepted: list[WeatherRecord] = []
    refused: list[tuple[int, str]] = []
    for index, item in enumerate(items):
        problem = _time_problem(item.time_ms, now_ms, max_future_ms)
        if not item.code:
            problem = "code is missing"
        elif not item.source:
            problem = "source is missing"
        if problem:
            refused.append((index, problem))
            continue
        accepted.append(WeatherRecord(item.time_ms, item.code, item.source))
    return accepted, refused
