"""``roadsense cloud bins``: a segment's measurements per 5 or 15 minutes, as CSV.

For a traffic engineer: one row per bin with the cameras' vehicles in view, stopped
vehicles and occupancy, and per vehicle class the vehicles in view and the line crossings
(counts add up across the segment's cameras, see ``roadsense.cloud.city.rows``). The same
bins as ``CityService.GetSegmentBins``, read from the store directly.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Protocol, TextIO

from roadsense.cloud.api.queries import bin_range
from roadsense.cloud.city.rows import MeasurementStore
from roadsense.cloud.city.segments import SegmentConfig
from roadsense.cloud.domain import VEHICLE_CLASSES
from roadsense.cloud.store.interface import CityStore
from roadsense.core.errors import NotFoundError

COLUMNS = (
    "segment_id",
    "start_utc",
    "start_ms",
    "bin_minutes",
    "cameras",
    "reports",
    "vehicles",
    "stopped",
    "occupancy",
    *(f"{c}_in_view" for c in VEHICLE_CLASSES),
    *(f"{c}_crossings" for c in VEHICLE_CLASSES),
)


class BinStore(MeasurementStore, CityStore, Protocol):
    """What the export reads: the bins, and the segments the store knows."""


def write_bins(
    store: BinStore,
    city: Mapping[str, SegmentConfig],
    *,
    segment_id: str,
    from_ms: int,
    to_ms: int,
    bin_minutes: int,
    out: TextIO,
) -> int:
    """Write the bins of ``segment_id`` in [from_ms, to_ms) as CSV; return how many rows."""
    from_ms, to_ms, bin_ms = bin_range(from_ms, to_ms, bin_minutes)
    if segment_id not in city and not store.segments([segment_id]):
        raise NotFoundError(f"no segment {segment_id[:100]!r} in the city or the store")
    bins = store.measurement_bins(segment_id, from_ms, to_ms, bin_ms)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for b in bins:
        start = datetime.fromtimestamp(b.start_ms / 1000, timezone.utc)
        writer.writerow(
            [
                segment_id,
                start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                b.start_ms,
                bin_minutes,
                b.cameras,
                b.reports,
                b.vehicles,
                b.stopped,
                b.occupancy,
                *(b.in_view.get(c, 0.0) for c in VEHICLE_CLASSES),
                *(b.crossings.get(c, 0) for c in VEHICLE_CLASSES),
            ]
        )
    return len(bins)
