"""Vehicles followed across a camera's samples: one id per vehicle, and stopped or moving.

Ids come from supervision's ByteTrack (IoU association with a Kalman prediction). Its
settings are in frames, so ``make_tracker`` converts seconds at the camera's sample rate:
a lost track is kept ``lost_seconds``. ByteTrack starts a track only when a box is matched
twice, and a vehicle that moves more than its own length between samples is not matched
at all: at 1 Hz fast vehicles get no id (they are still counted, from the detector),
at 5 Hz and more most keep one.

Stopped or moving does not use the ids. Measured on the CVAT-boxed TfL clips, detector
flicker broke the tracks of queued vehicles most often (a broken track has no history and
would read "moving"). ``LagStoppedRule`` needs no identity: a box is stopped when a box of
the same size stood within ``rel_threshold`` box sizes of it about ``window_s`` earlier.
Queued and parked vehicles are both stopped; the rule does not tell them apart. Limits: in
a dense queue a car that closes exactly one car length per window reads stopped, and a
vehicle the detector missed ``window_s`` ago reads moving.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import supervision as sv

Boxes = npt.NDArray[np.float32]
SAME_SIZE = 0.3
"""|log(size ratio)| under which two boxes may be the same vehicle."""


@dataclass(frozen=True)
class TrackerSettings:
    """ByteTrack in physical units."""

    sample_hz: float = 1.0
    lost_seconds: float = 3.0
    matching_threshold: float = 0.95
    activation_threshold: float = 0.05
    """Least score that starts a track: below the detector's own threshold, so that every
    reported box may get an id (ByteTrack's default, 0.25, drops most CCTV boxes)."""


def make_tracker(settings: TrackerSettings) -> sv.ByteTrack:
    """A ByteTrack that keeps a lost track ``lost_seconds`` at ``sample_hz``."""
    with warnings.catch_warnings():
        # supervision < 0.31 (pinned) warns that 0.31 moves ByteTrack out of it.
        warnings.simplefilter("ignore", FutureWarning)
        return _byte_track(settings)


def _byte_track(settings: TrackerSettings) -> sv.ByteTrack:
    return sv.ByteTrack(
        track_activation_threshold=settings.activation_threshold,
        # ByteTrack keeps a lost track frame_rate / 30 * lost_track_buffer samples.
        lost_track_buffer=max(1, round(settings.lost_seconds * 30)),
        minimum_matching_threshold=settings.matching_threshold,
        frame_rate=max(1, round(settings.sample_hz)),
    )


def track_ids(tracker: sv.ByteTrack, detections: sv.Detections) -> npt.NDArray[np.int64]:
    """The tracker's id of each detection, in the detections' order (-1: not tracked yet)."""
    ids = np.full(len(detections), -1, dtype=np.int64)
    tracked = tracker.update_with_detections(detections)
    if len(tracked) and tracked.tracker_id is not None:
        for box, track_id in zip(tracked.xyxy, tracked.tracker_id, strict=True):
            hit = np.nonzero(np.all(np.abs(detections.xyxy - box) < 1e-3, axis=1))[0]
            if hit.size:
                ids[hit[0]] = int(track_id)
    return ids


@dataclass(frozen=True)
class StoppedSettings:
    """The stopped rule: fixed before any evaluation (``rel_threshold`` 0.1 of a box)."""

    window_s: float = 2.0
    rel_threshold: float = 0.1
    lag_tolerance_s: float = 0.6
    """How far from ``window_s`` ago a sample may be and still serve as the reference
    (at 1 Hz: the sample 2 s back, or 1.4-2.6 s back when one was late)."""


class LagStoppedRule:
    """Stopped or moving for each box of a sample, against the boxes of ``window_s`` ago."""

    def __init__(self, settings: StoppedSettings) -> None:
        self._settings = settings
        self._past: deque[tuple[float, Boxes]] = deque()

    def update(self, t_s: float, xyxy: Boxes) -> npt.NDArray[np.bool_]:
        """Stopped flags of ``xyxy`` (N x 4) seen at ``t_s``; remembers the sample."""
        s = self._settings
        boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
        self._past.append((t_s, boxes))
        while self._past and self._past[0][0] < t_s - s.window_s - s.lag_tolerance_s - 1.0:
            self._past.popleft()
        stopped = np.zeros(len(boxes), dtype=bool)
        lagged = [
            past
            for t_past, past in self._past
            if abs(t_s - t_past - s.window_s) <= s.lag_tolerance_s and len(past)
        ]
        if not lagged or not len(boxes):
            return stopped
        reference = np.concatenate(lagged)
        centre, size = _centres(boxes)
        ref_centre, ref_size = _centres(reference)
        distance = np.linalg.norm(centre[:, None, :] - ref_centre[None, :, :], axis=2)
        same_size = np.abs(np.log(size[:, None] / ref_size[None, :])) < SAME_SIZE
        relative = np.where(same_size, distance / size[:, None], np.inf)
        return np.asarray(relative.min(axis=1) < s.rel_threshold)


def _centres(boxes: Boxes) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Box centres and sizes (square root of the area, at least one pixel)."""
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2).astype(np.float32)
    size = np.sqrt(np.clip(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1), 1.0, None))
    return centre, size.astype(np.float32)
