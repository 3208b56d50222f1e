"""Temporal support: a box the detector is unsure of counts when the camera's previous
sample counted a vehicle in the same place.

On low-resolution CCTV the detector's score for one queued car flickers around its
threshold from sample to sample; a per-frame threshold then drops the car in every other
sample (on the CVAT-boxed TfL clips most missed vehicles had a box scoring 0.02-0.15 at
their place). The rule, a hysteresis in time like ByteTrack's second association but
without motion prediction:

- a box scoring ``threshold`` or more counts;
- a box scoring ``support`` or more counts when it overlaps (IoU ``SUPPORT_IOU`` or more)
  a box counted in the camera's previous sample, taken at most ``MAX_GAP_S`` earlier;
- nothing else counts. Without history (the first sample, a single still, a gap in the
  stream) only the first holds.

A moving vehicle rarely overlaps its own box of a second ago, so at 1 Hz the support
mostly keeps stopped and slow vehicles, which are what a queue is made of. Its limit: a
false box that once scored ``threshold`` stays while its score stays above ``support``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import supervision as sv

SUPPORT_IOU = 0.5
"""Overlap with a counted box of the previous sample that supports a weak box (fixed
before any evaluation)."""
MAX_GAP_S = 2.5
"""Oldest previous sample that still supports (a late 1 Hz sample, not a stalled stream)."""


@dataclass(frozen=True)
class SupportThresholds:
    """The detector card's two thresholds; ``support`` None turns the support off."""

    threshold: float
    support: float | None = None

    def __post_init__(self) -> None:
        if self.support is not None and not 0 < self.support <= self.threshold:
            raise ValueError(
                f"support threshold {self.support} must be above 0 and at most the score "
                f"threshold {self.threshold}"
            )

    @property
    def least(self) -> float:
        """The least score a box may have to count at all."""
        return self.threshold if self.support is None else self.support


class TemporalSupport:
    """Which boxes of each sample of one camera count."""

    def __init__(self, thresholds: SupportThresholds) -> None:
        self.thresholds = thresholds
        self._last: tuple[float, npt.NDArray[np.float32]] | None = None

    def keep(
        self, t_s: float, xyxy: npt.NDArray[np.float32], scores: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.bool_]:
        """Whether each box (N x 4, with its score) of the sample at ``t_s`` counts;
        remembers the counted ones for the next sample."""
        boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        t = self.thresholds
        kept = scores >= t.threshold
        weak = ~kept & (scores >= t.least)
        last = self._last
        if t.support is not None and weak.any() and last is not None and len(last[1]):
            recent = 0 <= t_s - last[0] <= MAX_GAP_S
            if recent:
                overlap = sv.box_iou_batch(boxes[weak], last[1]).max(axis=1)
                kept[np.flatnonzero(weak)[overlap >= SUPPORT_IOU]] = True
        self._last = (t_s, boxes[kept])
        return np.asarray(kept)
