"""One camera's measurements: each sample's vehicles, and a report window's figures.

``CameraMeter.observe`` takes the detector's boxes of one sample and returns what the
camera saw (``Sample``): the vehicles whose ground contact is in the road zone and that
count by the detector card's thresholds (a weak box counts where the previous sample
counted one: ``roadsense.models.detection.support``), their track ids, which are stopped
(against every box of 2 s earlier, weak ones included), and the zone's occupancy.
``CameraMeter.close_window`` turns the samples since the last report into the report's
``Measurements``:

- vehicles in view and stopped vehicles: mean and largest count per sample;
- occupancy: the mean over the samples;
- per class: mean and largest count in view, and line crossings when a counting line is
  configured and the camera is sampled at ``MIN_COUNTING_HZ`` or more (else none are
  reported: ``crossings_counted`` false, never a zero that reads as an empty road);
- the level by the rule on the window's mean occupancy and stopped share, and how sure
  it is: the share of the window's samples whose own level agrees (the report's
  probabilities are those shares over the five levels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import supervision as sv

from roadsense.edge.measure.tracking import (
    LagStoppedRule,
    StoppedSettings,
    TrackerSettings,
    make_tracker,
    track_ids,
)
from roadsense.models.detection.rule import LEVELS, RULE_NAME, RuleThresholds, level, level_shares
from roadsense.models.detection.support import SupportThresholds, TemporalSupport
from roadsense.models.detection.zone import (
    LineCounter,
    Polygon,
    in_zone,
    occupancy,
    to_pixels,
    zone_mask,
)
from roadsense.proto.v1 import telemetry_pb2

VEHICLE_CLASSES = ("car", "motorcycle", "bus", "truck")
MIN_COUNTING_HZ = 5.0
"""Slowest sampling at which the tracker follows vehicles well enough to count crossings."""


@dataclass(frozen=True)
class Sample:
    """What one camera saw in one sample, its zone applied."""

    t_s: float
    xyxy: npt.NDArray[np.float32]
    """Vehicles in the zone, frame pixels."""
    classes: tuple[str, ...]
    scores: npt.NDArray[np.float32]
    track_ids: npt.NDArray[np.int64]
    stopped: npt.NDArray[np.bool_]
    occupancy: float
    level: str

    @property
    def vehicles(self) -> int:
        """Vehicles in view."""
        return len(self.classes)


@dataclass
class _Window:
    samples: list[Sample] = field(default_factory=list)
    tracks: set[int] = field(default_factory=set)


def _subset(detections: sv.Detections, keep: npt.NDArray[np.bool_]) -> sv.Detections:
    """The detections where ``keep`` holds (supervision's indexing, typed)."""
    chosen = detections[keep]
    assert isinstance(chosen, sv.Detections)
    return chosen


class CameraMeter:
    """The measuring state of one camera: tracker, stopped rule, zone, line, window."""

    def __init__(
        self,
        sample_hz: float,
        zone: Polygon | None = None,
        counting_line: Polygon | None = None,
        thresholds: RuleThresholds | None = None,
        *,
        stopped: StoppedSettings | None = None,
        support: SupportThresholds | None = None,
    ) -> None:
        """``support``: the detector card's thresholds (``DetectorCard.thresholds``); None
        counts every box given."""
        self._zone = zone
        self.use_thresholds(support)
        self._masks: dict[tuple[int, int], npt.NDArray[np.bool_]] = {}
        self._tracker = make_tracker(TrackerSettings(sample_hz=sample_hz))
        self._stopped = LagStoppedRule(stopped or StoppedSettings())
        self.thresholds = thresholds or RuleThresholds()
        counting = counting_line is not None and sample_hz >= MIN_COUNTING_HZ
        self._counting_line = counting_line if counting else None
        self._line: LineCounter | None = None
        self._window = _Window()

    def use_thresholds(self, support: SupportThresholds | None) -> None:
        """Count by another detector's thresholds from the next sample on."""
        self._support = TemporalSupport(support) if support is not None else None

    def mask(self, frame_shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
        """The zone as a mask of frames of this shape."""
        if frame_shape not in self._masks:
            self._masks[frame_shape] = zone_mask(self._zone, frame_shape)
        return self._masks[frame_shape]

    @property
    def zone(self) -> Polygon | None:
        """The zone's polygon (None: the whole frame)."""
        return self._zone

    def observe(
        self, t_s: float, detections: sv.Detections, frame_shape: tuple[int, int]
    ) -> Sample:
        """Take one sample's detections (frame pixels) at ``t_s`` seconds."""
        mask = self.mask(frame_shape)
        if self._counting_line is not None and self._line is None:
            start, end = to_pixels(self._counting_line, frame_shape)
            self._line = LineCounter((start[0], start[1]), (end[0], end[1]))
        inside = _subset(detections, in_zone(detections.xyxy.astype(np.float32), mask))
        candidates = inside.xyxy.astype(np.float32)
        counted = np.ones(len(inside), dtype=bool)
        if self._support is not None:
            scores = np.asarray(
                inside.confidence if inside.confidence is not None else counted, np.float32
            )
            # The candidates: what a device's detector returns (an evaluation asks for less).
            candidate = scores >= self._support.thresholds.least
            inside, candidates = _subset(inside, candidate), candidates[candidate]
            counted = self._support.keep(t_s, candidates, scores[candidate])
        # Every candidate is a reference for the stopped rule 2 s on: a queued car whose
        # box scored low then still stood there.
        stopped = self._stopped.update(t_s, candidates)[counted]
        inside = _subset(inside, counted)
        boxes = candidates[counted]
        ids = track_ids(self._tracker, inside)
        if self._line is not None:
            tracked = _subset(inside, ids >= 0)
            tracked.tracker_id = ids[ids >= 0]
            self._line.update(tracked)
        names = tuple(str(n) for n in np.asarray(inside.data.get("class_name", [])))
        share = float(stopped.mean()) if len(stopped) else 0.0
        covered = occupancy(mask, boxes)
        confidence = inside.confidence
        sample = Sample(
            t_s=t_s,
            xyxy=boxes,
            classes=names,
            scores=np.ones(len(boxes), np.float32)
            if confidence is None
            else np.asarray(confidence, np.float32),
            track_ids=ids,
            stopped=stopped,
            occupancy=covered,
            level=level(covered, share, len(names), self.thresholds),
        )
        self._window.samples.append(sample)
        self._window.tracks.update(int(i) for i in ids if i >= 0)
        return sample

    @property
    def samples_in_window(self) -> int:
        """Samples since the last report."""
        return len(self._window.samples)

    def close_window(self) -> tuple[telemetry_pb2.Measurements, list[float]]:
        """The window's measurements and the report's level probabilities; starts a new
        window. Needs at least one sample."""
        samples = self._window.samples
        if not samples:
            raise ValueError("no sample in the window")
        vehicles = np.array([s.vehicles for s in samples], dtype=np.float64)
        stopped = np.array([int(s.stopped.sum()) for s in samples], dtype=np.float64)
        covered = float(np.mean([s.occupancy for s in samples]))
        share = float(stopped.sum() / vehicles.sum()) if vehicles.sum() else 0.0
        window_level = level(covered, share, float(vehicles.mean()), self.thresholds)
        shares = level_shares([s.level for s in samples])
        crossings = self._line.crossings if self._line is not None else {}
        classes = []
        for name in VEHICLE_CLASSES:
            per_sample = [s.classes.count(name) for s in samples]
            if any(per_sample) or crossings.get(name):
                classes.append(
                    telemetry_pb2.ClassMeasurement(
                        vehicle_class=name,
                        mean_in_view=float(np.mean(per_sample)),
                        max_in_view=max(per_sample),
                        crossings=crossings.get(name, 0),
                    )
                )
        measurements = telemetry_pb2.Measurements(
            samples=len(samples),
            vehicles_mean=float(vehicles.mean()),
            vehicles_max=int(vehicles.max()),
            stopped_mean=float(stopped.mean()),
            stopped_max=int(stopped.max()),
            occupancy=covered,
            classes=classes,
            crossings_counted=self._counting_line is not None,
            level=window_level,
            rule=RULE_NAME,
            confidence=shares[LEVELS.index(window_level)],
            tracks=len(self._window.tracks),
        )
        if self._line is not None:
            self._line.crossings = {}
        self._window = _Window()
        return measurements, shares
