"""The canary verdict: canary against control devices, on what the fleet reports.

Each device's figures over the window: inference p95 (median of its later health messages),
report rate (reports per minute), share of uncertain frames (from the health counters'
growth) and the Jensen-Shannon divergence of its level distribution against its own
history before the rollout. A detector rollout adds what matters for a measuring model,
from each device's measured reports against its own history too: the relative change of
the mean vehicles in view, and the change of the stopped share. The canary's mean of each
is compared with the control's; a device without enough data in the window adds nothing
to a figure.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from roadsense.cloud.domain import HealthRecord
from roadsense.cloud.rollout.config import RolloutThresholds
from roadsense.proto.v1 import telemetry_pb2

LEVEL_BINS = 5
"""Bands of the 0-10 congestion level (0-2 free flow ... 8-10 severe)."""


def parse_health(record: HealthRecord) -> telemetry_pb2.DeviceHealth:
    """The DeviceHealth a stored health row holds."""
    return json_format.Parse(
        record.body_json, telemetry_pb2.DeviceHealth(), ignore_unknown_fields=True
    )


def level_distribution(levels: Sequence[float]) -> list[float]:
    """Share of levels in each band of the 0-10 scale."""
    counts = [0] * LEVEL_BINS
    for level in levels:
        band = min(LEVEL_BINS - 1, max(0, int(level / (10 / LEVEL_BINS))))
        counts[band] += 1
    total = sum(counts)
    return [c / total for c in counts] if total else [0.0] * LEVEL_BINS


def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence of two distributions, base 2 (0: same, 1: disjoint)."""

    def kl(a: Sequence[float], b: Sequence[float]) -> float:
        return sum(x * math.log2(x / y) for x, y in zip(a, b, strict=True) if x > 0)

    m = [(x + y) / 2 for x, y in zip(p, q, strict=True)]
    return max(0.0, min(1.0, (kl(p, m) + kl(q, m)) / 2))


MeasuredMeans = Sequence[tuple[float, float]]
"""(vehicles in view, stopped) means of measured reports, as the store gives them."""


def stopped_share(measured: MeasuredMeans) -> float | None:
    """Stopped vehicles over vehicles in view, across reports (None: no vehicle seen)."""
    vehicles = sum(v for v, _ in measured)
    return sum(s for _, s in measured) / vehicles if vehicles > 0 else None


@dataclass(frozen=True)
class MeasuredFigures:
    """A measuring device's vehicles and stopped share in the window and in its history
    before the rollout (None: too few measured reports, or no vehicle)."""

    vehicles: float | None
    vehicles_before: float | None
    stopped_share: float | None
    stopped_share_before: float | None

    @property
    def vehicle_change(self) -> float | None:
        """Relative change of the mean vehicles in view (0.2: a fifth more)."""
        if self.vehicles is None or not self.vehicles_before:
            return None
        return self.vehicles / self.vehicles_before - 1

    @property
    def stopped_change(self) -> float | None:
        """Change of the stopped share, absolute (0.1: ten points more)."""
        if self.stopped_share is None or self.stopped_share_before is None:
            return None
        return self.stopped_share - self.stopped_share_before


def measured_figures(
    measured: MeasuredMeans, history: MeasuredMeans, min_reports: int
) -> MeasuredFigures:
    """A device's measured figures, from its window's and its history's measured reports."""
    if len(measured) < min_reports or len(history) < min_reports:
        return MeasuredFigures(None, None, None, None)
    return MeasuredFigures(
        vehicles=statistics.fmean(v for v, _ in measured),
        vehicles_before=statistics.fmean(v for v, _ in history),
        stopped_share=stopped_share(measured),
        stopped_share_before=stopped_share(history),
    )


@dataclass(frozen=True)
class DeviceFigures:
    """One device's figures over a window (None: not enough data for that figure)."""

    device_id: str
    p95_ms: float | None
    reports_per_min: float | None
    uncertain_share: float | None
    level_shift: float | None
    measured: MeasuredFigures | None = None
    """Of a detector rollout only."""

    def as_json(self) -> dict[str, Any]:
        """The figures, rounded, for the rollout's record."""
        figures = {
            "device_id": self.device_id,
            "p95_ms": _rounded(self.p95_ms),
            "reports_per_min": _rounded(self.reports_per_min),
            "uncertain_share": _rounded(self.uncertain_share),
            "level_shift": _rounded(self.level_shift),
        }
        if self.measured is not None:
            m = self.measured
            figures.update(
                vehicles=_rounded(m.vehicles),
                vehicles_before=_rounded(m.vehicles_before),
                vehicle_change=_rounded(m.vehicle_change),
                stopped_share=_rounded(m.stopped_share),
                stopped_share_before=_rounded(m.stopped_share_before),
                stopped_change=_rounded(m.stopped_change),
            )
        return figures


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def device_figures(
    device_id: str,
    *,
    health: Sequence[HealthRecord],
    levels: Sequence[float],
    history_levels: Sequence[float],
    window_s: float,
    min_reports: int,
    measured: MeasuredMeans | None = None,
    history_measured: MeasuredMeans = (),
) -> DeviceFigures:
    """A device's figures from its health and report levels in the window, and history;
    with ``measured`` (a detector rollout), its measured figures too."""
    messages = [parse_health(h) for h in health]
    # A device's p95 covers its last few hundred calls, the first ones of a new model
    # (warm-up) among them: the median of the window's later half is its settled figure.
    settled = messages[len(messages) // 2 :]
    p95s = [m.inference_p95_ms for m in settled if m.inference_p95_ms > 0]
    uncertain = None
    if len(messages) >= 2:
        first, last = messages[0], messages[-1]
        classified = last.frames_classified - first.frames_classified
        unsure = last.frames_uncertain - first.frames_uncertain
        if classified < 0 or unsure < 0:  # the agent restarted: its counters began again
            classified, unsure = last.frames_classified, last.frames_uncertain
        if classified > 0:
            uncertain = unsure / classified
    shift = None
    if len(levels) >= min_reports and len(history_levels) >= min_reports:
        shift = jensen_shannon(level_distribution(levels), level_distribution(history_levels))
    return DeviceFigures(
        device_id,
        p95_ms=statistics.median(p95s) if p95s else None,
        reports_per_min=len(levels) / (window_s / 60) if messages or levels else None,
        uncertain_share=uncertain,
        level_shift=shift,
        measured=(
            None if measured is None else measured_figures(measured, history_measured, min_reports)
        ),
    )


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


@dataclass
class Verdict:
    """The canary's comparison with the control: figures of both, and what is outside."""

    canary: dict[str, float | None]
    control: dict[str, float | None]
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every compared figure is within its threshold."""
        return not self.failures


def _group(figures: Sequence[DeviceFigures], measuring: bool) -> dict[str, float | None]:
    group = {
        "p95_ms": _rounded(_mean([f.p95_ms for f in figures])),
        "reports_per_min": _rounded(_mean([f.reports_per_min for f in figures])),
        "uncertain_share": _rounded(_mean([f.uncertain_share for f in figures])),
        "level_shift": _rounded(_mean([f.level_shift for f in figures])),
    }
    if measuring:
        measured = [f.measured for f in figures if f.measured is not None]
        group["vehicle_change"] = _rounded(_mean([m.vehicle_change for m in measured]))
        group["stopped_change"] = _rounded(_mean([m.stopped_change for m in measured]))
    return group


def compare(
    canary: Sequence[DeviceFigures],
    control: Sequence[DeviceFigures],
    limits: RolloutThresholds,
    *,
    canary_baseline_p95_ms: float | None = None,
) -> Verdict:
    """Canary against control; without a control figure, latency against the canary
    devices' own p95 before the rollout, and the other figures against zero drift. When a
    figure has measured figures (a detector rollout), vehicles and stopped share too."""
    measuring = any(f.measured is not None for f in (*canary, *control))
    a, b = _group(canary, measuring), _group(control, measuring)
    verdict = Verdict(a, b)
    base_p95 = b["p95_ms"] if b["p95_ms"] is not None else canary_baseline_p95_ms
    if a["p95_ms"] is not None and base_p95:
        ratio = a["p95_ms"] / base_p95
        if ratio > limits.max_latency_ratio:
            verdict.failures.append(
                f"inference p95 {a['p95_ms']:.1f} ms is {ratio:.1f}x the control's "
                f"{base_p95:.1f} ms (limit {limits.max_latency_ratio}x)"
            )
    rate_a, rate_b = a["reports_per_min"], b["reports_per_min"]
    if rate_a is not None and rate_b and rate_a / rate_b < limits.min_report_rate_ratio:
        verdict.failures.append(
            f"report rate {rate_a:.1f}/min is {rate_a / rate_b:.2f} of the control's "
            f"{rate_b:.1f}/min (limit {limits.min_report_rate_ratio})"
        )
    unsure_a, unsure_b = a["uncertain_share"], b["uncertain_share"] or 0.0
    if unsure_a is not None and unsure_a - unsure_b > limits.max_uncertain_increase:
        verdict.failures.append(
            f"uncertain frames {unsure_a:.0%} against the control's {unsure_b:.0%} "
            f"(limit +{limits.max_uncertain_increase:.0%})"
        )
    shift_a, shift_b = a["level_shift"], b["level_shift"] or 0.0
    if shift_a is not None and shift_a - shift_b > limits.max_level_shift:
        verdict.failures.append(
            f"level distribution shifted by JSD {shift_a:.3f} against its history, the "
            f"control's {shift_b:.3f} (limit +{limits.max_level_shift})"
        )
    if measuring:
        _compare_measured(verdict, limits)
    return verdict


def _compare_measured(verdict: Verdict, limits: RolloutThresholds) -> None:
    """A detector's counts: either way off the control's drift is a fault of the model."""
    a, b = verdict.canary, verdict.control
    change_a, change_b = a["vehicle_change"], b["vehicle_change"] or 0.0
    if change_a is not None and abs(change_a - change_b) > limits.max_vehicle_shift:
        verdict.failures.append(
            f"vehicles in view changed by {change_a:+.0%} against their history, the "
            f"control's by {change_b:+.0%} (limit ±{limits.max_vehicle_shift:.0%})"
        )
    stopped_a, stopped_b = a["stopped_change"], b["stopped_change"] or 0.0
    if stopped_a is not None and abs(stopped_a - stopped_b) > limits.max_stopped_shift:
        verdict.failures.append(
            f"stopped share changed by {stopped_a:+.2f} against its history, the "
            f"control's by {stopped_b:+.2f} (limit ±{limits.max_stopped_shift})"
        )
