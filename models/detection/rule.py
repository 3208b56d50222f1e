"""The congestion level from what a camera measured, by a stated rule.

Inputs, over one camera's road zone: ``occupancy`` (share of the zone covered by
vehicles, a stand-in for density) and ``stopped_share`` (share of the vehicles in the zone
that are stopped, a stand-in for speed).

Sources. The Highway Capacity Manual bands level of service on basic freeway segments by
density (A up to 11, B 18, C 26, D 35, E 45, F above 45 passenger cars per mile per lane);
with 5-6 m vehicles a lane at 45 pc/mi/ln is about 16 % covered and at jam density (about
190) about 65-70 %. Seen by an oblique camera, boxes overlap and overhang, so the image
occupancy reads higher than the ground's: the bands below are image-space analogues, not
HCM's numbers. DATEX II names traffic states by speed as a share of free-flow speed
(stationary under 10 %, queuing 10-25 %, slow 25-75 %); a stopped vehicle here (moved
less than a tenth of its size in 2 s) is a stationary or queuing one.

The rule (``occupancy-stopped/1``), the first that holds, from the worst level down:

1. jammed    occupancy >= jam_occupancy and stopped_share >= jam_stopped
2. heavy     occupancy >= heavy_occupancy and stopped_share >= heavy_stopped,
             or occupancy >= jam_occupancy (dense but moving: stop-and-go)
3. moderate  occupancy >= moderate_occupancy,
             or occupancy >= light_occupancy and stopped_share >= moderate_stopped
4. light     occupancy >= light_occupancy or at least one vehicle in view
5. free      otherwise.

Stopped vehicles alone never raise the level: one parked car on an empty road is no
congestion (HCM's F is a density condition). Parked vehicles count as stopped and as
occupancy: they take capacity. A red-light queue reads heavy for as long as it stands,
which is why a report judges a window of samples, not one frame. Every threshold is a
camera setting (``[cameras.rule]``). The defaults are the median of the thresholds each
fold of a leave-one-camera-out fit chose on its 20 training cameras (hand-labelled levels,
``roadsense.models.detection.levels``); docs/measurement.md gives the held-out figures.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

LEVELS = ("free", "light", "moderate", "heavy", "jammed")
RULE_NAME = "occupancy-stopped/1"


@dataclass(frozen=True)
class RuleThresholds:
    """The rule's thresholds for one camera."""

    light_occupancy: float = 0.08
    moderate_occupancy: float = 0.10
    heavy_occupancy: float = 0.25
    jam_occupancy: float = 0.35
    moderate_stopped: float = 0.70
    heavy_stopped: float = 0.15
    jam_stopped: float = 0.60

    def __post_init__(self) -> None:
        occupancies = (
            self.light_occupancy,
            self.moderate_occupancy,
            self.heavy_occupancy,
            self.jam_occupancy,
        )
        if not all(0 <= a <= b <= 1 for a, b in itertools.pairwise(occupancies)):
            raise ValueError("occupancy thresholds must rise from light to jam within 0..1")
        for value in (self.moderate_stopped, self.heavy_stopped, self.jam_stopped):
            if not 0 <= value <= 1:
                raise ValueError("stopped-share thresholds are shares: within 0..1")


def level(occupancy: float, stopped_share: float, vehicles: float, t: RuleThresholds) -> str:
    """The level the rule gives these measurements."""
    occupied = min(max(occupancy, 0.0), 1.0)
    stopped = min(max(stopped_share, 0.0), 1.0)
    if occupied >= t.jam_occupancy and stopped >= t.jam_stopped:
        return "jammed"
    if (occupied >= t.heavy_occupancy and stopped >= t.heavy_stopped) or (
        occupied >= t.jam_occupancy
    ):
        return "heavy"
    if occupied >= t.moderate_occupancy or (
        occupied >= t.light_occupancy and stopped >= t.moderate_stopped
    ):
        return "moderate"
    if occupied >= t.light_occupancy or vehicles > 0:
        return "light"
    return "free"


def level_shares(levels: Sequence[str]) -> list[float]:
    """How often each level (in ``LEVELS`` order) was the samples' level, smoothed so that
    no level is impossible: the report's probabilities."""
    counts = [levels.count(name) + 0.1 for name in LEVELS]
    total = sum(counts)
    return [c / total for c in counts]
