"""The city wing's measurement rows: what each camera measured, and bins of it over time.

Every accepted report that carries measurements (schema version 2) is kept as one row of
``measurements`` and one row per vehicle class in ``measured_classes``, in the same
transaction as the report. ``MeasurementStore`` is what the API and the export need of a
store: the bins a traffic engineer asks for, and each camera's newest measurements.

Bins add cameras up: within a bin each camera counts once (the mean of its report windows
for vehicles in view, the sum for line crossings), and the cameras of a segment are summed,
since each is configured on its own lanes of it. A segment whose cameras overlap must give
only one of them the counting line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from roadsense.cloud.domain import ClassFigures, Measured, Reading
from roadsense.cloud.store.session import Sessions, SqlSession

MEASUREMENT_SCHEMA = (
    """CREATE TABLE measurements (device_id {TEXT}, seq {INT}, camera_id {TEXT},
        segment_id {TEXT}, capture_time_ms {INT}, window_start_ms {INT}, samples {INT},
        vehicles_mean {REAL} NOT NULL, vehicles_max {INT}, stopped_mean {REAL} NOT NULL,
        stopped_max {INT}, occupancy {REAL} NOT NULL, level {TEXT}, rule {TEXT},
        confidence {REAL} NOT NULL, tracks {INT}, crossings_counted {INT},
        speed {REAL} NOT NULL, speed_unit {TEXT}, detector_version {TEXT},
        PRIMARY KEY (device_id, seq))""",
    "CREATE INDEX measurements_segment_time ON measurements (segment_id, capture_time_ms)",
    """CREATE TABLE measured_classes (device_id {TEXT}, seq {INT}, camera_id {TEXT},
        segment_id {TEXT}, capture_time_ms {INT}, vehicle_class {TEXT},
        mean_in_view {REAL} NOT NULL, max_in_view {INT}, crossings {INT},
        PRIMARY KEY (device_id, seq, vehicle_class))""",
    "CREATE INDEX measured_classes_segment_time ON measured_classes (segment_id, capture_time_ms)",
    "ALTER TABLE segments ADD COLUMN vehicles {REAL} NOT NULL DEFAULT 0",
    "ALTER TABLE segments ADD COLUMN stopped {REAL} NOT NULL DEFAULT 0",
    "ALTER TABLE segments ADD COLUMN occupancy {REAL} NOT NULL DEFAULT 0",
    "ALTER TABLE segments ADD COLUMN measured_cameras {INT} DEFAULT 0",
)
"""Measurement tables and the segments' fused measurements, in both stores' types."""

MEASUREMENT_COLUMNS = (
    "device_id, seq, camera_id, segment_id, capture_time_ms, window_start_ms, samples, "
    "vehicles_mean, vehicles_max, stopped_mean, stopped_max, occupancy, level, rule, "
    "confidence, tracks, crossings_counted, speed, speed_unit, detector_version"
)
INSERT_MEASUREMENTS = (
    f"INSERT INTO measurements ({MEASUREMENT_COLUMNS}) VALUES "
    f"({', '.join('?' * len(MEASUREMENT_COLUMNS.split(', ')))})"
)
INSERT_CLASSES = (
    "INSERT INTO measured_classes (device_id, seq, camera_id, segment_id, capture_time_ms, "
    "vehicle_class, mean_in_view, max_in_view, crossings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Each camera once per bin, then the cameras summed (occupancy: their mean).
BIN_TOTALS = """SELECT start_ms, SUM(vehicles), SUM(stopped), AVG(occupancy), COUNT(*),
       SUM(reports)
   FROM (SELECT (capture_time_ms / ?) * ? AS start_ms, device_id, camera_id,
                AVG(vehicles_mean) AS vehicles, AVG(stopped_mean) AS stopped,
                AVG(occupancy) AS occupancy, COUNT(*) AS reports
         FROM measurements
         WHERE segment_id = ? AND capture_time_ms >= ? AND capture_time_ms < ?
         GROUP BY 1, device_id, camera_id) AS per_camera
   GROUP BY start_ms ORDER BY start_ms"""
BIN_CLASSES = """SELECT start_ms, vehicle_class, SUM(in_view), SUM(crossings)
   FROM (SELECT (capture_time_ms / ?) * ? AS start_ms, device_id, camera_id, vehicle_class,
                AVG(mean_in_view) AS in_view, SUM(crossings) AS crossings
         FROM measured_classes
         WHERE segment_id = ? AND capture_time_ms >= ? AND capture_time_ms < ?
         GROUP BY 1, device_id, camera_id, vehicle_class) AS per_camera
   GROUP BY start_ms, vehicle_class ORDER BY start_ms, vehicle_class"""
NEWEST_PER_CAMERA = f"""SELECT {MEASUREMENT_COLUMNS} FROM measurements m
   WHERE segment_id = ? AND capture_time_ms = (
       SELECT MAX(capture_time_ms) FROM measurements
       WHERE device_id = m.device_id AND camera_id = m.camera_id AND segment_id = m.segment_id)
   ORDER BY device_id, camera_id"""

NEWEST_CLASSES_PER_CAMERA = """SELECT device_id, seq, vehicle_class, mean_in_view, max_in_view,
   crossings FROM measured_classes c
   WHERE segment_id = ? AND capture_time_ms = (
       SELECT MAX(capture_time_ms) FROM measurements
       WHERE device_id = c.device_id AND camera_id = c.camera_id AND segment_id = c.segment_id)
   ORDER BY device_id, seq, vehicle_class"""


@dataclass(frozen=True)
class MeasurementBin:
    """A segment's measurements over one bin of time, its cameras added up."""

    start_ms: int
    vehicles: float
    """Vehicles in view: each camera's mean over the bin, summed over cameras."""
    stopped: float
    occupancy: float
    cameras: int
    reports: int
    in_view: dict[str, float] = field(default_factory=dict)
    """Vehicles in view by class, added up the same way."""
    crossings: dict[str, int] = field(default_factory=dict)
    """Line crossings by class in the bin, summed over cameras."""


@dataclass(frozen=True)
class CameraMeasurement:
    """A camera's newest measurements on a segment."""

    device_id: str
    camera_id: str
    capture_time_ms: int
    measured: Measured


class MeasurementStore(Protocol):
    """What cameras measured on the city's segments."""

    def measurement_bins(
        self, segment_id: str, from_ms: int, to_ms: int, bin_ms: int
    ) -> list[MeasurementBin]:
        """A segment's bins of ``bin_ms`` starting within [from_ms, to_ms), oldest first."""

    def camera_measurements(self, segment_id: str) -> list[CameraMeasurement]:
        """Each camera's newest measurements on a segment."""


def insert_measurements(db: SqlSession, readings: Sequence[Reading]) -> None:
    """Keep the measurements of newly stored readings (in the caller's transaction)."""
    measured = [r for r in readings if r.measured is not None]
    if not measured:
        return
    rows = []
    classes = []
    for r in measured:
        m = r.measured
        assert m is not None
        rows.append(
            (
                r.device_id,
                r.seq,
                r.camera_id,
                r.segment_id,
                r.capture_time_ms,
                r.window_start_ms,
                m.samples,
                m.vehicles_mean,
                m.vehicles_max,
                m.stopped_mean,
                m.stopped_max,
                m.occupancy,
                m.level,
                m.rule,
                m.confidence,
                m.tracks,
                int(m.crossings_counted),
                m.speed,
                m.speed_unit,
                m.detector_version,
            )
        )
        classes += [
            (
                r.device_id,
                r.seq,
                r.camera_id,
                r.segment_id,
                r.capture_time_ms,
                c.vehicle_class,
                c.mean_in_view,
                c.max_in_view,
                c.crossings,
            )
            for c in m.classes
        ]
    db.executemany(INSERT_MEASUREMENTS, rows)
    if classes:
        db.executemany(INSERT_CLASSES, classes)


class MeasurementRows(Sessions):
    """``MeasurementStore`` in the statements both engines run."""

    def measurement_bins(
        self, segment_id: str, from_ms: int, to_ms: int, bin_ms: int
    ) -> list[MeasurementBin]:
        # Bins align on multiples of bin_ms; from_ms is rounded down onto one.
        start = from_ms // bin_ms * bin_ms
        params = [bin_ms, bin_ms, segment_id, start, to_ms]
        with self._read() as db:
            totals = db.rows(BIN_TOTALS, params)
            per_class = db.rows(BIN_CLASSES, params)
        in_view: dict[int, dict[str, float]] = {}
        crossings: dict[int, dict[str, int]] = {}
        for bin_start, vehicle_class, seen, crossed in per_class:
            in_view.setdefault(int(bin_start), {})[str(vehicle_class)] = round(float(seen), 3)
            crossings.setdefault(int(bin_start), {})[str(vehicle_class)] = int(crossed)
        return [
            MeasurementBin(
                start_ms=int(b),
                vehicles=round(float(v), 3),
                stopped=round(float(s), 3),
                occupancy=round(float(o), 4),
                cameras=int(c),
                reports=int(n),
                in_view=in_view.get(int(b), {}),
                crossings=crossings.get(int(b), {}),
            )
            for b, v, s, o, c, n in totals
        ]

    def camera_measurements(self, segment_id: str) -> list[CameraMeasurement]:
        with self._read() as db:
            rows = db.rows(NEWEST_PER_CAMERA, [segment_id])
            classes: dict[tuple[str, int], list[ClassFigures]] = {}
            for c in db.rows(NEWEST_CLASSES_PER_CAMERA, [segment_id]):
                classes.setdefault((str(c[0]), int(c[1])), []).append(
                    ClassFigures(str(c[2]), float(c[3]), int(c[4]), int(c[5]))
                )
        return [
            CameraMeasurement(
                device_id=str(r[0]),
                camera_id=str(r[2]),
                capture_time_ms=int(r[4]),
                measured=Measured(
                    samples=int(r[6]),
                    vehicles_mean=float(r[7]),
                    vehicles_max=int(r[8]),
                    stopped_mean=float(r[9]),
                    stopped_max=int(r[10]),
                    occupancy=float(r[11]),
                    level=str(r[12]),
                    rule=str(r[13]),
                    confidence=float(r[14]),
                    tracks=int(r[15]),
                    crossings_counted=bool(r[16]),
                    speed=float(r[17]),
                    speed_unit=str(r[18]),
                    classes=tuple(classes.get((str(r[0]), int(r[1])), [])),
                    detector_version=str(r[19]),
                ),
            )
            for r in rows
        ]
