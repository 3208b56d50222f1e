"""How well the measured congestion level agrees with people, and which thresholds to ship.

The edge measures a camera's road zone (vehicles, stopped share, occupancy) and derives a
level by a stated rule (``roadsense.models.detection.rule``). The rule's seven thresholds are
settings, so they must be chosen on labelled cameras and scored on others, the same way
the scene classifier is (leave-one-camera-out, every camera weighing the same): else a
table of agreement says only how well the thresholds remember the cameras they were set on.

What is here (pure numpy and Python; the detector, the meter and the footage files are the
caller's business):

- ``nearest_measure`` and ``window_measure``: what the rule reads for one labelled frame,
  from the samples of its clip (the nearest sample, or a report window of samples ending at
  the frame, averaged as ``CameraMeter.close_window`` does);
- ``threshold_grid``: a modest grid of thresholds (occupancy rising from light to jam);
- ``fit_thresholds``: the grid point with the best camera-mean agreement (tie-break: fewer
  frames two or more levels off, then the nearest to the shipped defaults);
- ``loco``: for each camera, thresholds fitted on the others and scored on it, against the
  first labels and, where it has frames, a second labeller's; camera means with a 95 %
  bootstrap interval over cameras, and the fold-median thresholds (the shipped defaults).

The rule is evaluated by ``roadsense.models.detection.rule.level`` itself, never a copy: a
score here is the score of the code the edge runs.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields

import numpy as np
import numpy.typing as npt

from roadsense.models.detection.rule import LEVELS, RuleThresholds, level

WINDOW_S = 10.0
"""A report window: the level of a report is judged on this many seconds of samples."""

STOPPED_HISTORY_S = 1.4
"""The first sample whose stopped flags can mean anything: the lag rule needs a sample about
2 s back (``StoppedSettings``: 2.0 s, tolerance 0.6 s). Before it every box reads moving."""

OCCUPANCY_STEPS: tuple[tuple[float, ...], ...] = (
    (0.02, 0.05, 0.08, 0.12),
    (0.10, 0.15, 0.20, 0.25),
    (0.20, 0.25, 0.30, 0.35, 0.45),
    (0.35, 0.45, 0.60, 0.80),
)
"""Candidate light, moderate, heavy and jam occupancies. They span the occupancies measured
on the footage (camera medians 0.05-0.40) and contain the defaults."""

STOPPED_STEPS: tuple[tuple[float, ...], ...] = (
    (0.3, 0.5, 0.7),
    (0.15, 0.3, 0.5),
    (0.4, 0.6, 0.8),
)
"""Candidate moderate, heavy and jam stopped shares; they contain the defaults."""

INTERVAL_RESAMPLES = 2000
"""Bootstrap resamples of the cameras (as ``roadsense.models.loco_report``)."""

TIE = 1e-9
"""Camera means closer than this are a tie (floating sums in another order differ)."""


@dataclass(frozen=True)
class Sampled:
    """One sample of a clip as the meter measured it (its zone applied)."""

    frame: int
    t_s: float
    vehicles: int
    stopped: int
    occupancy: float


@dataclass(frozen=True)
class Measure:
    """What the rule reads: occupancy, share of vehicles stopped, vehicles in view."""

    occupancy: float
    stopped_share: float
    vehicles: float


@dataclass(frozen=True)
class LabelledMeasure:
    """One labelled frame with what was measured at it."""

    camera: str
    clip: str
    frame: int
    label: str
    measure: Measure


@dataclass(frozen=True)
class Scores:
    """Agreement with the labels, and the share of frames two or more levels off."""

    frames: int
    agreement: float
    gross: float


@dataclass(frozen=True)
class Evaluation:
    """Per camera and camera-mean scores of one set of thresholds."""

    thresholds: RuleThresholds
    per_camera: dict[str, Scores]
    agreement: float
    gross: float


@dataclass(frozen=True)
class CameraRow:
    """One held-out camera: the thresholds fitted without it and its scores."""

    camera: str
    thresholds: RuleThresholds
    first: Scores
    second: Scores | None
    """Against the second labeller, on the frames it labelled (None: it labelled none)."""


@dataclass(frozen=True)
class LocoResult:
    """Leave-one-camera-out: rows, camera means and their 95 % intervals."""

    rows: list[CameraRow]
    means: dict[str, float]
    """``agreement``, ``gross``, ``agreement_second``, ``gross_second``."""
    intervals: dict[str, tuple[float, float]]
    median_thresholds: RuleThresholds


def nearest_measure(samples: Sequence[Sampled], frame: int) -> Measure:
    """The sample nearest ``frame`` (the earlier one on a tie). ``samples`` are one clip's,
    in frame order. One sample: what a single-frame label is closest to."""
    if not samples:
        raise ValueError("no samples")
    best = min(samples, key=lambda s: (abs(s.frame - frame), s.frame))
    share = best.stopped / best.vehicles if best.vehicles else 0.0
    return Measure(best.occupancy, share, float(best.vehicles))


def window_measure(
    samples: Sequence[Sampled], frame: int, t_s: float, window_s: float = WINDOW_S
) -> Measure:
    """The samples of the ``window_s`` seconds ending at ``frame`` (time ``t_s``), averaged as
    a report is: mean occupancy, mean vehicles, stopped share = stopped / vehicles summed.

    The stopped share counts only samples late enough to have a stopped history (a clip
    starts cold; a running camera never does), unless the window has none of those. The
    window is what a report judges, and a red light's queue of a few seconds averages out.
    """
    inside = [s for s in samples if s.frame <= frame and s.t_s > t_s - window_s]
    if not inside:
        raise ValueError(f"no sample at or before frame {frame}")
    occupancy = float(np.mean([s.occupancy for s in inside]))
    vehicles = float(np.mean([s.vehicles for s in inside]))
    warm = [s for s in inside if s.t_s >= STOPPED_HISTORY_S] or inside
    seen = sum(s.vehicles for s in warm)
    share = sum(s.stopped for s in warm) / seen if seen else 0.0
    return Measure(occupancy, share, vehicles)


def threshold_grid(
    occupancy_steps: Sequence[Sequence[float]] = OCCUPANCY_STEPS,
    stopped_steps: Sequence[Sequence[float]] = STOPPED_STEPS,
) -> list[RuleThresholds]:
    """Every combination whose occupancies rise strictly from light to jam (equal ones
    would make a level unreachable)."""
    if len(occupancy_steps) != 4 or len(stopped_steps) != 3:
        raise ValueError("four occupancy and three stopped-share step lists are needed")
    grid: list[RuleThresholds] = []
    for occ in itertools.product(*occupancy_steps):
        if not all(a < b for a, b in itertools.pairwise(occ)):
            continue
        for stop in itertools.product(*stopped_steps):
            grid.append(RuleThresholds(*occ, *stop))
    return grid


def predict(items: Sequence[LabelledMeasure], thresholds: RuleThresholds) -> list[str]:
    """The rule's level of every item (``rule.level``)."""
    return [
        level(m.occupancy, m.stopped_share, m.vehicles, thresholds)
        for m in (item.measure for item in items)
    ]


def _index(label: str) -> int:
    return LEVELS.index(label)


def _scores(labels: Sequence[str], predicted: Sequence[str]) -> Scores:
    """Agreement and gross share of one camera's frames."""
    if not labels:
        return Scores(0, math.nan, math.nan)
    gaps = [abs(_index(a) - _index(b)) for a, b in zip(labels, predicted, strict=True)]
    return Scores(
        len(gaps),
        sum(g == 0 for g in gaps) / len(gaps),
        sum(g >= 2 for g in gaps) / len(gaps),
    )


def evaluate(items: Sequence[LabelledMeasure], thresholds: RuleThresholds) -> Evaluation:
    """Per camera agreement and gross share, and their camera means."""
    predicted = predict(items, thresholds)
    by_camera: dict[str, tuple[list[str], list[str]]] = {}
    for item, guess in zip(items, predicted, strict=True):
        labels, guesses = by_camera.setdefault(item.camera, ([], []))
        labels.append(item.label)
        guesses.append(guess)
    per_camera = {c: _scores(a, b) for c, (a, b) in sorted(by_camera.items())}
    return Evaluation(
        thresholds,
        per_camera,
        float(np.mean([s.agreement for s in per_camera.values()])),
        float(np.mean([s.gross for s in per_camera.values()])),
    )


@dataclass(frozen=True)
class ScoreTable:
    """Every grid point scored on every camera: ``agreement[g, c]`` and ``gross[g, c]``.

    The rule's output does not depend on labels, so each grid point's levels are computed
    once for all frames; a fold then only averages the columns of its training cameras.
    Fitting on any subset of cameras from this table is exactly ``fit_thresholds`` on those
    cameras' frames, at a 21st of the cost.
    """

    grid: list[RuleThresholds]
    cameras: list[str]
    agreement: npt.NDArray[np.float64]
    gross: npt.NDArray[np.float64]


def score_table(items: Sequence[LabelledMeasure], grid: Sequence[RuleThresholds]) -> ScoreTable:
    """Score every grid point on every camera of ``items``."""
    if not items:
        raise ValueError("no labelled frames")
    if not grid:
        raise ValueError("empty grid")
    measures = sorted({astuple(item.measure) for item in items})
    where = {m: i for i, m in enumerate(measures)}
    column = np.array([where[astuple(item.measure)] for item in items])
    cameras = sorted({item.camera for item in items})
    camera_of = np.array([cameras.index(item.camera) for item in items])
    truth = np.array([_index(item.label) for item in items], dtype=np.int8)
    # cameras x frames, each row averaging that camera's frames
    weights = np.zeros((len(cameras), len(items)))
    weights[camera_of, np.arange(len(items))] = 1.0
    weights /= weights.sum(axis=1, keepdims=True)
    agreement = np.empty((len(grid), len(cameras)))
    gross = np.empty((len(grid), len(cameras)))
    for g, thresholds in enumerate(grid):
        levels = np.array(
            [_index(level(o, s, v, thresholds)) for o, s, v in measures], dtype=np.int8
        )
        gap = np.abs(levels[column] - truth)
        agreement[g] = weights @ (gap == 0)
        gross[g] = weights @ (gap >= 2)
    return ScoreTable(list(grid), cameras, agreement, gross)


PRIOR = RuleThresholds(
    light_occupancy=0.05,
    moderate_occupancy=0.15,
    heavy_occupancy=0.30,
    jam_occupancy=0.45,
    moderate_stopped=0.5,
    heavy_stopped=0.3,
    jam_stopped=0.6,
)
"""The thresholds written down before any fit (image-space analogues of HCM's bands): ties
go to the grid point nearest them. Fixed here, not the shipped defaults, so that shipping a
fit's result as the defaults does not change what the next fit chooses."""


def _distance_to_prior(thresholds: RuleThresholds) -> float:
    pairs = zip(astuple(thresholds), astuple(PRIOR), strict=True)
    return float(sum(abs(float(a) - float(b)) for a, b in pairs))


def choose(table: ScoreTable, cameras: Sequence[str]) -> int:
    """The grid index with the best mean agreement over ``cameras`` (each weighs the same);
    ties: fewer frames two or more levels off (a gross error misleads most), then the grid
    point nearest ``PRIOR`` (move the written-down values only as far as the data asks), then
    the first in grid order."""
    columns = [table.cameras.index(c) for c in cameras]
    if not columns:
        raise ValueError("no cameras to fit on")
    agreement = table.agreement[:, columns].mean(axis=1)
    gross = table.gross[:, columns].mean(axis=1)
    top = agreement >= agreement.max() - TIE
    least = gross[top].min()
    ties = np.nonzero(top & (gross <= least + TIE))[0]
    return int(min(ties, key=lambda g: (_distance_to_prior(table.grid[g]), g)))


def fit_thresholds(
    items: Sequence[LabelledMeasure], grid: Sequence[RuleThresholds] | None = None
) -> Evaluation:
    """The grid point that agrees best with the labels of ``items`` (camera mean; ties as
    ``choose``), with its in-sample scores: a fit, not a test."""
    table = score_table(items, grid if grid is not None else threshold_grid())
    best = table.grid[choose(table, table.cameras)]
    return evaluate(items, best)


def bootstrap_interval(
    values: Sequence[float], resamples: int = INTERVAL_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of the mean, cameras drawn with replacement (NaN left out):
    how far the mean could move with another draw of cameras like these."""
    present = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if not len(present):
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(present), size=(resamples, len(present)))
    low, high = np.percentile(present[draws].mean(axis=1), [2.5, 97.5])
    return (float(low), float(high))


def median_thresholds(chosen: Sequence[RuleThresholds]) -> RuleThresholds:
    """Each threshold's median over the folds. A per-field median of rising sequences still
    rises, so the result is a valid ``RuleThresholds``."""
    if not chosen:
        raise ValueError("no thresholds")
    values = [
        statistics.median(float(getattr(t, f.name)) for t in chosen) for f in fields(chosen[0])
    ]
    return RuleThresholds(*values)


def _nan_mean(values: Sequence[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return float(np.mean(present)) if present else math.nan


def loco(
    items: Sequence[LabelledMeasure],
    second: Sequence[LabelledMeasure] = (),
    grid: Sequence[RuleThresholds] | None = None,
    progress: Callable[[str], None] | None = None,
) -> LocoResult:
    """Leave one camera out: fit on the other cameras' first labels (``items``), score the
    held-out camera on its first labels and on its ``second`` labels (never fitted on)."""
    table = score_table(items, grid if grid is not None else threshold_grid())
    rows: list[CameraRow] = []
    for camera in table.cameras:
        thresholds = table.grid[choose(table, [c for c in table.cameras if c != camera])]
        mine = [item for item in items if item.camera == camera]
        theirs = [item for item in second if item.camera == camera]
        first = evaluate(mine, thresholds).per_camera[camera]
        other = evaluate(theirs, thresholds).per_camera[camera] if theirs else None
        rows.append(CameraRow(camera, thresholds, first, other))
        if progress is not None:
            progress(camera)
    columns = {
        "agreement": [r.first.agreement for r in rows],
        "gross": [r.first.gross for r in rows],
        "agreement_second": [r.second.agreement if r.second else math.nan for r in rows],
        "gross_second": [r.second.gross if r.second else math.nan for r in rows],
    }
    return LocoResult(
        rows,
        {name: _nan_mean(values) for name, values in columns.items()},
        {name: bootstrap_interval(values) for name, values in columns.items()},
        median_thresholds([r.thresholds for r in rows]),
    )
