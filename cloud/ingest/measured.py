"""A report's measurements, checked: what a camera measured in its road zone.

Reports of schema version 2 carry them (``Measurements`` in telemetry.proto). The checks
refuse what no camera can measure (a negative count, more stopped vehicles than vehicles,
a zone more than fully covered, a class that is no vehicle); such a report is dead-lettered
whole, like any other malformed report. With measurements, the reading's 0-10 level is
the rule's level placed on the city scale (free 0, light 2.5, moderate 5, heavy 7.5,
jammed 10), so a segment's level follows its cameras' measured levels.
"""

from __future__ import annotations

import math

from roadsense.cloud.domain import LEVELS, VEHICLE_CLASSES, ClassFigures, Measured
from roadsense.cloud.ingest.congestion import LEVEL_MAX
from roadsense.proto.v1 import telemetry_pb2

Problem = tuple[str, str]
SPEED_UNITS = ("", "km/h", "px/s")
MAX_RULE_CHARS = 64
SLACK = 1e-3
"""Float tolerance of the consistency checks (means travel as 32-bit floats)."""


def level_of(measured: Measured) -> float:
    """The rule's level on the city's 0-10 scale."""
    return round(LEVELS.index(measured.level) / (len(LEVELS) - 1) * LEVEL_MAX, 3)


def read_measurements(
    message: telemetry_pb2.Measurements,
) -> tuple[Measured | None, Problem | None]:
    """The checked measurements of a report, or the problem that refuses it."""
    problem = _figures_problem(message) or _classes_problem(message)
    if problem:
        return None, ("bad_measurements", problem)
    classes = tuple(
        ClassFigures(c.vehicle_class, float(c.mean_in_view), c.max_in_view, c.crossings)
        for c in message.classes
    )
    return (
        Measured(
            samples=message.samples,
            vehicles_mean=round(float(message.vehicles_mean), 4),
            vehicles_max=message.vehicles_max,
            stopped_mean=round(float(message.stopped_mean), 4),
            stopped_max=message.stopped_max,
            occupancy=round(float(message.occupancy), 4),
            level=message.level,
            rule=message.rule,
            confidence=round(float(message.confidence), 4),
            tracks=message.tracks,
            crossings_counted=message.crossings_counted,
            speed=round(float(message.speed), 3),
            speed_unit=message.speed_unit,
            classes=classes,
            detector_version=message.detector_version[:MAX_RULE_CHARS],
        ),
        None,
    )


def _figures_problem(m: telemetry_pb2.Measurements) -> str | None:
    if m.samples == 0:
        return "measurements need samples of 1 or more"
    if m.level not in LEVELS:
        return f"level {m.level[:32]!r} is not one of {', '.join(LEVELS)}"
    if not m.rule or len(m.rule) > MAX_RULE_CHARS:
        return f"rule must name the rule that gave the level (1 to {MAX_RULE_CHARS} characters)"
    figures = {
        "vehicles_mean": m.vehicles_mean,
        "stopped_mean": m.stopped_mean,
        "occupancy": m.occupancy,
        "confidence": m.confidence,
        "speed": m.speed,
    }
    for name, value in figures.items():
        if not math.isfinite(value) or value < 0:
            return f"{name} must be finite and not negative (got {value})"
    for name in ("occupancy", "confidence"):
        if figures[name] > 1 + SLACK:
            return f"{name} is a share: at most 1 (got {figures[name]:.4f})"
    if m.vehicles_mean > m.vehicles_max + SLACK or m.stopped_mean > m.stopped_max + SLACK:
        return "a mean count exceeds the largest count of the window"
    if m.stopped_mean > m.vehicles_mean + SLACK or m.stopped_max > m.vehicles_max:
        return "more vehicles stopped than vehicles in view"
    if m.speed_unit not in SPEED_UNITS:
        return f"speed_unit {m.speed_unit[:16]!r} is not km/h or px/s"
    return None


def _classes_problem(m: telemetry_pb2.Measurements) -> str | None:
    seen: set[str] = set()
    for c in m.classes:
        if c.vehicle_class not in VEHICLE_CLASSES:
            return f"class {c.vehicle_class[:32]!r} is not one of {', '.join(VEHICLE_CLASSES)}"
        if c.vehicle_class in seen:
            return f"class {c.vehicle_class!r} appears twice"
        seen.add(c.vehicle_class)
        if not math.isfinite(c.mean_in_view) or c.mean_in_view < 0:
            return f"{c.vehicle_class}: mean_in_view must be finite and not negative"
        if c.mean_in_view > c.max_in_view + SLACK:
            return f"{c.vehicle_class}: mean_in_view exceeds max_in_view"
        if c.crossings and not m.crossings_counted:
            return f"{c.vehicle_class}: crossings given but crossings_counted is false"
    return None
