"""City-wide state: each segment's level fused over the cameras that watch it.

A segment's level is the weighted mean of its cameras' latest levels: each
camera weighs its confidence (the probability of its most probable class)
times its recency (``exp(-age / stale_after)``, age behind the segment's
newest reading); cameras older than the staleness limit do not count. Where the
fresh cameras measure (reports of schema version 2), the segment also carries their
vehicles in view and stopped vehicles, summed (each camera is configured on its own
lanes of the segment, so their counts add up), and their mean road-zone occupancy. The
city congestion index is the mean level of the segments that are not stale,
weighted by length times road class (``roadsense.cloud.city.segments``).

A report becomes its camera's current reading only when it is no older than that
camera's current one and arrived within the staleness limit of its capture
(``received - capture <= stale_after``): one that arrives already older than
that would be stale on arrival, so it is kept for history (the store has it)
but never moves or creates a segment's state. A segment's ``reports`` counts
the reports that became current; its ``camera_ids`` name every camera whose
report became current there, stale ones too, whichever writer took it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace

from roadsense.cloud.city.segments import ROAD_CLASS_WEIGHT, SegmentConfig, band
from roadsense.cloud.domain import Reading, SegmentSnapshot

CameraKey = tuple[str, str]


class CityTracker:
    """In-memory fused state per segment, rebuilt from the store at start."""

    def __init__(self, stale_after_ms: int) -> None:
        self._stale_after_ms = stale_after_ms
        self._lock = threading.Lock()
        self._cameras: dict[str, dict[CameraKey, Reading]] = {}
        self._segments: dict[str, SegmentSnapshot] = {}
        self._version = 0

    @property
    def version(self) -> int:
        """Counts the changes of any segment's state (cached answers hold within one)."""
        return self._version

    @property
    def stale_after_ms(self) -> int:
        """The staleness limit: also how late a report may arrive and still become current."""
        return self._stale_after_ms

    def arrived_in_time(self, reading: Reading) -> bool:
        """Whether a reading arrived soon enough after its capture to be current state."""
        return reading.received_ms - reading.capture_time_ms <= self._stale_after_ms

    def load(self, segments: Iterable[SegmentSnapshot], readings: Iterable[Reading]) -> None:
        """Restore stored segment rows and each camera's latest reading that arrived in time."""
        with self._lock:
            for snapshot in segments:
                self._segments[snapshot.segment_id] = snapshot
            for reading in readings:
                if self.arrived_in_time(reading):
                    key = (reading.device_id, reading.camera_id)
                    self._cameras.setdefault(reading.segment_id, {})[key] = reading
            self._version += 1

    def merge_stored(
        self, segments: Iterable[SegmentSnapshot], readings: Iterable[Reading]
    ) -> None:
        """Take what other writers of the store stored, before fusing new readings: segment
        rows (their report counts and last change) and each camera's newer readings."""
        with self._lock:
            for snapshot in segments:
                self._segments[snapshot.segment_id] = snapshot
            for reading in readings:
                self._take_current(reading, ties=False)

    def replace(self, snapshots: Iterable[SegmentSnapshot]) -> list[SegmentSnapshot]:
        """Take segment states another process fused and stored; return those that differ."""
        changed = []
        with self._lock:
            for snapshot in snapshots:
                current = self._segments.get(snapshot.segment_id)
                if current is not None and replace(current, stale=False) == snapshot:
                    continue
                self._segments[snapshot.segment_id] = snapshot
                changed.append(snapshot)
            if changed:
                self._version += 1
        return changed

    def apply(self, readings: Iterable[Reading]) -> list[SegmentSnapshot]:
        """Fold new readings in; return the segments whose state changed.

        A reading older than its camera's current one, or one that arrived later than
        the staleness limit after its capture, changes nothing (it is history only).
        """
        touched: dict[str, int] = {}
        with self._lock:
            for reading in readings:
                if self._take_current(reading, ties=True):
                    touched[reading.segment_id] = touched.get(reading.segment_id, 0) + 1
            changed = []
            for segment_id, count in touched.items():
                snapshot = self._fuse(segment_id, count)
                self._segments[segment_id] = snapshot
                changed.append(snapshot)
            if changed:
                self._version += 1
        return changed

    def _take_current(self, reading: Reading, *, ties: bool) -> bool:
        """Make a reading its camera's current one if it arrived in time and is newer than
        the current one (or as new, with ``ties``); the caller holds the lock."""
        if not self.arrived_in_time(reading):
            return False
        cameras = self._cameras.setdefault(reading.segment_id, {})
        key = (reading.device_id, reading.camera_id)
        current = cameras.get(key)
        if current is not None:
            newer = reading.capture_time_ms - current.capture_time_ms
            if newer < 0 or (newer == 0 and not ties):
                return False
        cameras[key] = reading
        return True

    def _fuse(self, segment_id: str, new_reports: int) -> SegmentSnapshot:
        cameras = self._cameras[segment_id]
        newest = max(r.capture_time_ms for r in cameras.values())
        fresh = [r for r in cameras.values() if newest - r.capture_time_ms <= self._stale_after_ms]
        weights = [
            max(r.probabilities) * math.exp(-(newest - r.capture_time_ms) / self._stale_after_ms)
            for r in fresh
        ]
        level = round(
            sum(w * r.level for w, r in zip(weights, fresh, strict=True)) / sum(weights), 3
        )
        label = max(fresh, key=lambda r: r.capture_time_ms).label
        previous = self._segments.get(segment_id)
        last_changed = newest
        if previous is not None and previous.label == label:
            last_changed = previous.last_changed_ms
        camera_ids = {f"{d}/{c}" for d, c in cameras}
        if previous is not None:
            # A camera another writer saw go stale is only in the stored row: the readings
            # other writers hand over (merge_stored) are the ones recent enough to count.
            camera_ids.update(previous.camera_ids)
        measured = [r.measured for r in fresh if r.measured is not None]
        return SegmentSnapshot(
            segment_id=segment_id,
            level=level,
            label=label,
            updated_ms=newest,
            last_changed_ms=last_changed,
            camera_ids=tuple(sorted(camera_ids)),
            stale=False,
            reports=(previous.reports if previous else 0) + new_reports,
            vehicles=round(sum(m.vehicles_mean for m in measured), 3),
            stopped=round(sum(m.stopped_mean for m in measured), 3),
            occupancy=round(sum(m.occupancy for m in measured) / len(measured), 4)
            if measured
            else 0.0,
            measured_cameras=len(measured),
        )

    def snapshot(self, now_ms: int, segment_ids: Iterable[str] = ()) -> list[SegmentSnapshot]:
        """Current state of the requested segments (all when none named), stale flags set."""
        wanted = set(segment_ids)
        with self._lock:
            segments = [s for s in self._segments.values() if not wanted or s.segment_id in wanted]
        return sorted(
            (self.with_staleness(s, now_ms) for s in segments), key=lambda s: s.segment_id
        )

    def with_staleness(self, snapshot: SegmentSnapshot, now_ms: int) -> SegmentSnapshot:
        """The snapshot with its stale flag computed for ``now_ms``."""
        stale = now_ms - snapshot.updated_ms > self._stale_after_ms
        return snapshot if stale == snapshot.stale else replace(snapshot, stale=stale)


def congestion_index(
    segments: Iterable[SegmentSnapshot], city: Mapping[str, SegmentConfig] | None = None
) -> float:
    """Level of the segments that are not stale, weighted by length x road class; 0 if none."""
    city = city or {}
    total = weight_sum = 0.0
    for segment in segments:
        if segment.stale:
            continue
        config = city.get(segment.segment_id)
        weight = config.weight if config else ROAD_CLASS_WEIGHT["local"]
        total += weight * segment.level
        weight_sum += weight
    return round(total / weight_sum, 3) if weight_sum else 0.0


def segments_per_band(segments: Iterable[SegmentSnapshot]) -> dict[str, int]:
    """How many segments (not stale) fall in each 0-10 band."""
    counts: dict[str, int] = {}
    for segment in segments:
        if not segment.stale:
            name = band(segment.level)
            counts[name] = counts.get(name, 0) + 1
    return counts
