"""Readings and segments as the rows of the SQL stores, and back (``sql.py`` holds the
statements that read and write them)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

from roadsense.cloud.domain import Reading, SegmentSnapshot
from roadsense.cloud.store.session import Row


@functools.lru_cache(maxsize=64)
def _labels_json(labels: tuple[str, ...]) -> str:
    # Every report of a model carries the same labels: encode them once.
    return json.dumps(labels)


def report_row(r: Reading) -> Row:
    """A reading as the values of ``REPORT_COLUMNS``."""
    return (
        r.device_id,
        r.seq,
        r.camera_id,
        r.segment_id,
        r.capture_time_ms,
        r.window_start_ms,
        r.received_ms,
        r.model_version,
        _labels_json(r.labels),
        "[" + ",".join(repr(p) for p in r.probabilities) + "]",
        r.frames_in_window,
        r.level,
    )


@functools.lru_cache(maxsize=64)
def _labels(text: str) -> tuple[str, ...]:
    # The reverse of _labels_json: a model's reports all carry the same labels.
    return tuple(json.loads(text))


def reading_from_row(row: Row) -> Reading:
    """A row of ``REPORT_COLUMNS`` as a reading."""
    return Reading(
        device_id=row[0],
        seq=int(row[1]),
        camera_id=row[2],
        segment_id=row[3],
        capture_time_ms=int(row[4]),
        window_start_ms=int(row[5]),
        received_ms=int(row[6]),
        model_version=row[7],
        labels=_labels(row[8]),
        probabilities=tuple(json.loads(row[9])),
        frames_in_window=int(row[10]),
        level=float(row[11]),
    )


def segment_snapshots(rows: list[Row]) -> list[SegmentSnapshot]:
    """Rows of ``SELECT_SEGMENTS`` as segment snapshots."""
    return [
        SegmentSnapshot(
            segment_id=row[0],
            level=float(row[1]),
            label=row[2],
            updated_ms=int(row[3]),
            last_changed_ms=int(row[4]),
            camera_ids=tuple(json.loads(row[5])),
            stale=False,
            reports=int(row[6]),
            vehicles=float(row[7]),
            stopped=float(row[8]),
            occupancy=float(row[9]),
            measured_cameras=int(row[10]),
        )
        for row in rows
    ]


def first_of_each(readings: Sequence[Reading], fresh: set[tuple[str, int]]) -> list[Reading]:
    """The readings whose key is in ``fresh``, each key once (a redelivery in one batch)."""
    kept = []
    for reading in readings:
        key = (reading.device_id, reading.seq)
        if key in fresh:
            fresh.discard(key)
            kept.append(reading)
    return kept


def segment_rows(segments: list[SegmentSnapshot]) -> list[Row]:
    """Segment rows for SAVE_SEGMENTS, in key order."""
    return [
        (
            s.segment_id,
            s.level,
            s.label,
            s.updated_ms,
            s.last_changed_ms,
            json.dumps(s.camera_ids),
            s.reports,
            s.vehicles,
            s.stopped,
            s.occupancy,
            s.measured_cameras,
        )
        for s in sorted(segments, key=lambda s: s.segment_id)
    ]
