"""Counts, boxes and stopped vehicles against hand-drawn boxes, leave one camera out.

The caller runs the detector over each boxed clip once (at a low score threshold) and
replays the samples through a camera's meter for each setting asked (score threshold and
support threshold, ``roadsense.models.detection.support``): each scored frame's counted
boxes with their stopped flags, the truth boxes, and a scoring zone. For each held-out
camera the setting is chosen on the other cameras (``choose``: the lowest count error
over the grid of both); the held-out camera is then scored at it:

- count error: sum over frames of |found - true| / sum of true, in the scoring zone
  (the zone where the annotators boxed vehicles: far, unboxed ones would read as false);
- recall at IoU 0.3 and 0.5 of every truth box, precision of the boxes in the zone;
- stopped or moving: of the truth boxes found (IoU 0.3), the mean of the recall of stopped
  and of moving ones, so that calling everything moving scores 0.5, not the moving share;
  with the numbers of stopped and moving truth boxes it rests on (few stopped boxes make
  the stopped recall, and so the agreement, a coin toss).

Cameras counted by hand (single frames, no boxes) are scored on counts alone
(``hand_count_scores``): the count error as above, and the bias (found - true) / true,
which says whether the detector misses vehicles or adds some.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from roadsense.models.detection.cvat import FrameTruth
from roadsense.models.detection.scoring import balanced_agreement, greedy_match, score_detections
from roadsense.models.detection.support import SupportThresholds

THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
"""Score thresholds a fold may choose from."""
SUPPORTS = (0.03, 0.05, 0.08, 0.1)
"""Support thresholds a fold may choose from (below its score threshold), or none."""


@dataclass(frozen=True)
class ScoredFrame:
    """One sampled frame: the boxes that counted by a setting's thresholds, and the truth."""

    xyxy: npt.NDArray[np.float32]
    in_zone: npt.NDArray[np.bool_]
    """Whether each counted box stands in the scoring zone."""
    stopped: npt.NDArray[np.bool_]
    truth: FrameTruth
    stopped_known: bool = True
    """False for frames too early in a clip for the stopped rule (no 2 s history yet)."""


@dataclass(frozen=True)
class CountScores:
    """One camera's figures at one setting."""

    frames: int
    vehicles: int
    count_error: float
    recall_30: float
    recall_50: float
    precision_30: float
    precision_50: float
    stopped_agreement: float
    stopped_boxes: int = 0
    """Truth boxes found and flagged stopped or parked, over the scored frames: what the
    stopped recall rests on (one vehicle queued for 10 s at 5 Hz is 50)."""
    moving_boxes: int = 0
    """Truth boxes found and moving, over the scored frames."""


@dataclass(frozen=True)
class CountFold:
    """A held-out camera: the thresholds chosen without it, and its scores."""

    camera: str
    threshold: float
    support: float | None
    scores: CountScores


def score_camera(frames: Sequence[ScoredFrame]) -> CountScores:
    """The figures of one camera's frames (each frame's counted boxes)."""
    found_zone, truths = [], []
    predicted_stopped: list[bool] = []
    true_stopped: list[bool] = []
    for frame in frames:
        found_zone.append(frame.xyxy[frame.in_zone])
        truths.append(frame.truth.xyxy)
        if frame.stopped_known:
            for p, t in greedy_match(frame.xyxy, frame.truth.xyxy, 0.3):
                predicted_stopped.append(bool(frame.stopped[p]))
                true_stopped.append(bool(frame.truth.not_moving[t]))
    everything = score_detections([f.xyxy for f in frames], truths)
    zoned = score_detections(found_zone, truths)
    return CountScores(
        frames=len(frames),
        vehicles=everything.n_true,
        count_error=zoned.count_error,
        recall_30=everything.recall(0.3),
        recall_50=everything.recall(0.5),
        precision_30=zoned.precision(0.3),
        precision_50=zoned.precision(0.5),
        stopped_agreement=balanced_agreement(
            np.array(predicted_stopped, dtype=bool), np.array(true_stopped, dtype=bool)
        ),
        stopped_boxes=sum(true_stopped),
        moving_boxes=len(true_stopped) - sum(true_stopped),
    )


Score = Callable[[str, SupportThresholds], CountScores]
"""A camera's figures with its boxes counted by these thresholds (the caller replays the
camera's samples through the meter, so the support and the stopped rule see the boxes
that counted)."""


def choose(
    score: Score,
    cameras: Sequence[str],
    thresholds: Sequence[float] = THRESHOLDS,
    supports: Sequence[float] = SUPPORTS,
) -> SupportThresholds:
    """The setting with the lowest mean count error on ``cameras`` over every score
    threshold, each alone or with a lower support threshold; ties go to no support, then
    to the lower score threshold."""

    def error(setting: SupportThresholds) -> float:
        return float(np.mean([score(c, setting).count_error for c in cameras]))

    options = [SupportThresholds(t) for t in thresholds]
    options += [SupportThresholds(t, s) for t in thresholds for s in supports if s < t]
    return min(options, key=error)


def leave_one_camera_out(
    score: Score,
    cameras: Sequence[str],
    thresholds: Sequence[float] = THRESHOLDS,
    supports: Sequence[float] = SUPPORTS,
) -> list[CountFold]:
    """Each camera scored at the setting ``choose`` finds on the others."""
    folds = []
    for held_out in cameras:
        others = [c for c in cameras if c != held_out]
        chosen = (
            choose(score, others, thresholds, supports)
            if others
            else SupportThresholds(thresholds[0])
        )
        folds.append(CountFold(held_out, chosen.threshold, chosen.support, score(held_out, chosen)))
    return folds


def camera_mean(folds: Sequence[CountFold], field: str) -> float:
    """The mean of a figure over the held-out cameras (a camera without it is left out)."""
    values = [getattr(f.scores, field) for f in folds]
    present = [v for v in values if not math.isnan(v)]
    return float(np.mean(present)) if present else math.nan


@dataclass(frozen=True)
class HandCountScores:
    """One camera's counts against a person's, at the detector's own threshold."""

    camera: str
    frames: int
    vehicles: int
    found: int
    count_error: float
    bias: float


def hand_count_scores(camera: str, pairs: Sequence[tuple[int, int]]) -> HandCountScores:
    """(true, found) per frame of one camera → its count error and bias."""
    true = sum(t for t, _ in pairs)
    found = sum(f for _, f in pairs)
    error = sum(abs(f - t) for t, f in pairs) / true if true else math.nan
    bias = (found - true) / true if true else math.nan
    return HandCountScores(camera, len(pairs), true, found, error, bias)
