"""Checks of the city API's query arguments; each refusal is a ``RequestError`` in user terms."""

from __future__ import annotations

import math
from collections.abc import Sequence

from roadsense.cloud.city.segments import ROAD_CLASS_WEIGHT
from roadsense.cloud.forecast.feeds import MAX_BATCH
from roadsense.core.errors import RequestError

DEFAULT_HISTORY_MS = 3_600_000
"""GetSegment's history range when the request names none: the last hour."""
MAX_LEVEL = 10.0


def history_range(from_ms: int, to_ms: int, now_ms: int) -> tuple[int, int]:
    """GetSegment's [from, to] in UTC ms: 0 means "the default" (to: now, from: an hour earlier)."""
    if from_ms < 0 or to_ms < 0:
        raise RequestError(
            f"from_ms and to_ms are UTC ms since 1970 and cannot be negative "
            f"(got from_ms {from_ms}, to_ms {to_ms})"
        )
    to = to_ms or now_ms
    start = from_ms or to - DEFAULT_HISTORY_MS
    if start > to:
        raise RequestError(f"from_ms {start} is after to_ms {to}")
    return start, to


def check_min_level(level: float) -> float:
    """GetCityState's level filter: a number within the 0-10 scale."""
    if not math.isfinite(level) or not 0.0 <= level <= MAX_LEVEL:
        raise RequestError(f"min_level must be a number within 0..10, not {level!r}")
    return level


def check_road_classes(classes: Sequence[str]) -> set[str]:
    """GetCityState's road-class filter: only classes the city configuration knows."""
    unknown = sorted({c for c in classes if c not in ROAD_CLASS_WEIGHT})
    if unknown:
        shown = ", ".join(repr(c[:40]) for c in unknown[:5])
        raise RequestError(f"road_classes {shown} not known; use {', '.join(ROAD_CLASS_WEIGHT)}")
    return set(classes)


def check_count(field: str, count: int) -> None:
    """A repeated field of a request holds at most ``MAX_BATCH`` items."""
    if count > MAX_BATCH:
        raise RequestError(f"{count} {field} in one request; send at most {MAX_BATCH} per call")


BIN_MINUTES = (5, 15)
MAX_BIN_RANGE_MS = 31 * 24 * 3600 * 1000


def bin_range(from_ms: int, to_ms: int, bin_minutes: int) -> tuple[int, int, int]:
    """GetSegmentBins' [from, to) and bin length in ms, checked."""
    if bin_minutes not in BIN_MINUTES:
        raise RequestError(f"bin_minutes must be 5 or 15, not {bin_minutes}")
    if from_ms <= 0 or to_ms <= 0:
        raise RequestError(
            f"from_ms and to_ms are UTC ms since 1970 and both are needed "
            f"(got from_ms {from_ms}, to_ms {to_ms})"
        )
    if from_ms >= to_ms:
        raise RequestError(f"from_ms {from_ms} is not before to_ms {to_ms}")
    if to_ms - from_ms > MAX_BIN_RANGE_MS:
        days = (to_ms - from_ms) / 86_400_000
        raise RequestError(f"the range spans {days:.1f} days; ask for 31 days at most")
    return from_ms, to_ms, bin_minutes * 60_000
