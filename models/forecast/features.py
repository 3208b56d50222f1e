"""Forecaster inputs from a series, without torch: training and the cloud share them.

Per step and segment: the normalised value (0 where missing), a missing-data
flag, time of day and day of week (sin/cos) and, when the model knows
weather, the weather code one-hot. A window's ``base`` is the mean of its
observed normalised values (0 if none); the network predicts offsets from it.
``slots`` gives the time-of-day slot of every window step and every target
step: the network looks its daily profile up with them. The card written at
export carries everything needed to rebuild these arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]
BASE_FEATURES = ("value_normalised_or_0", "observed", "tod_sin", "tod_cos", "dow_sin", "dow_cos")
MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class FeatureSpec:
    """What turns raw values into model inputs: scaling, weather coding, time-of-day slots."""

    mean: float
    std: float
    weather_codes: tuple[int, ...] = ()
    interval_min: float = 15.0
    time_zone: str = "UTC"
    """IANA zone whose clock the time-of-day and day-of-week features follow."""

    @property
    def names(self) -> list[str]:
        """Feature names in input order (written to the card)."""
        return [*BASE_FEATURES, *(f"weather_{c}" for c in self.weather_codes)]

    @property
    def count(self) -> int:
        """Features per step."""
        return len(self.names)

    @property
    def slots_per_day(self) -> int:
        """Time-of-day slots: one per interval (at least one)."""
        return max(1, round(MINUTES_PER_DAY / self.interval_min))


@dataclass(frozen=True)
class WindowInputs:
    """The network's inputs for a batch of (window, segment) pairs."""

    steps: FloatArray
    """batch x window x features"""
    segment: IndexArray
    """batch: index into the model's segment ids"""
    base: FloatArray
    """batch: mean observed normalised input (0 if none)"""
    slots: IndexArray
    """batch x (window + max horizon): time-of-day slot of each input and target step"""

    def feed(self) -> dict[str, npt.NDArray[np.generic]]:
        """ONNX input name -> array: the exported graph's inputs are exactly these fields."""
        return {
            "steps": self.steps,
            "segment": self.segment,
            "base": self.base,
            "slots": self.slots,
        }


def time_features(times: Sequence[datetime]) -> FloatArray:
    """steps x 4: sin/cos of time of day and of day of week."""
    features = np.zeros((len(times), 4), dtype=np.float32)
    for i, t in enumerate(times):
        day = (t.hour * 60 + t.minute + t.second / 60) / 1440
        week = (t.weekday() + day) / 7
        features[i] = (
            math.sin(2 * math.pi * day),
            math.cos(2 * math.pi * day),
            math.sin(2 * math.pi * week),
            math.cos(2 * math.pi * week),
        )
    return features


def local_times(spec: FeatureSpec, times: Sequence[datetime]) -> list[datetime]:
    """The times on the clock of the model's time zone (naive times are taken as already so)."""
    zone = ZoneInfo(spec.time_zone)
    return [t.astimezone(zone) if t.tzinfo is not None else t for t in times]


def time_slots(spec: FeatureSpec, times: Sequence[datetime]) -> IndexArray:
    """steps: the time-of-day slot (0 .. slots_per_day - 1) of each step, in the model's zone."""
    minutes = np.array(
        [t.hour * 60 + t.minute + t.second / 60 for t in local_times(spec, times)],
        dtype=np.float64,
    )
    return np.rint(minutes / spec.interval_min).astype(np.int64) % spec.slots_per_day


def step_features(
    spec: FeatureSpec,
    values: npt.NDArray[np.float64],
    observed: npt.NDArray[np.bool_],
    times: Sequence[datetime],
    weather: npt.NDArray[np.int64] | None,
) -> FloatArray:
    """steps x segments x features for a block of consecutive steps."""
    steps, segments = values.shape
    normalised = np.where(observed, (values - spec.mean) / spec.std, 0.0)
    parts = [
        normalised[:, :, None].astype(np.float32),
        observed[:, :, None].astype(np.float32),
        np.repeat(time_features(local_times(spec, times))[:, None, :], segments, axis=1),
    ]
    if spec.weather_codes:
        onehot = np.zeros((steps, len(spec.weather_codes)), dtype=np.float32)
        if weather is not None:
            for j, code in enumerate(spec.weather_codes):
                onehot[:, j] = weather == code
        parts.append(np.repeat(onehot[:, None, :], segments, axis=1))
    return np.concatenate(parts, axis=2)


def window_inputs(
    spec: FeatureSpec,
    features: FloatArray,
    slots: IndexArray,
    *,
    starts: Sequence[int],
    window: int,
    horizon: int,
) -> WindowInputs:
    """Inputs for every segment of the windows beginning at ``starts`` (window-major order).

    ``slots`` are the steps' time-of-day slots (``time_slots``); the target steps'
    slots continue from the window's last one, so no times past the window are needed.
    """
    start_array = np.asarray(starts, dtype=np.int64)
    segments = features.shape[1]
    index = start_array[:, None] + np.arange(window)[None, :]
    steps = features[index]  # n x window x segments x features
    steps = np.transpose(steps, (0, 2, 1, 3)).reshape(-1, window, features.shape[2])
    observed = steps[:, :, 1]
    counts = observed.sum(axis=1)
    base = np.where(counts > 0, (steps[:, :, 0] * observed).sum(axis=1) / np.maximum(counts, 1), 0)
    window_slots = slots[index]  # n x window
    ahead = (window_slots[:, -1:] + np.arange(1, horizon + 1)[None, :]) % spec.slots_per_day
    all_slots = np.concatenate([window_slots, ahead], axis=1)
    return WindowInputs(
        steps=np.ascontiguousarray(steps, dtype=np.float32),
        segment=np.tile(np.arange(segments, dtype=np.int64), len(start_array)),
        base=base.astype(np.float32),
        slots=np.ascontiguousarray(np.repeat(all_slots, segments, axis=0), dtype=np.int64),
    )
