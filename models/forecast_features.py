"""Forecaster inputs from a series, without torch: training and the cloud share them.

Per step and segment: the normalised value (0 where missing), a missing-data
flag, time of day and day of week (sin/cos) and, when the model knows
weather, the weather code one-hot. A window's ``base`` is the mean of its
observed normalised values (0 if none); the network predicts offsets from it.
The card written at export carries everything needed to rebuild these arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
BASE_FEATURES = ("value_normalised_or_0", "observed", "tod_sin", "tod_cos", "dow_sin", "dow_cos")


@dataclass(frozen=True)
class FeatureSpec:
    """What turns raw values into model inputs: scaling and the weather coding."""

    mean: float
    std: float
    weather_codes: tuple[int, ...] = ()

    @property
    def names(self) -> list[str]:
        """Feature names in input order (written to the card)."""
        return [*BASE_FEATURES, *(f"weather_{c}" for c in self.weather_codes)]

    @property
    def count(self) -> int:
        """Features per step."""
        return len(self.names)


@dataclass(frozen=True)
class WindowInputs:
    """The network's inputs for a batch of (window, segment) pairs."""

    steps: FloatArray
    """batch x window x features"""
    segment: npt.NDArray[np.int64]
    """batch: index into the model's segment ids"""
    base: FloatArray
    """batch: mean observed normalised input (0 if none)"""

    def feed(self) -> dict[str, npt.NDArray[np.generic]]:
        """ONNX input name -> array: the exported graph's inputs are exactly these fields."""
        return {"steps": self.steps, "segment": self.segment, "base": self.base}


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
        np.repeat(time_features(times)[:, None, :], segments, axis=1),
    ]
    if spec.weather_codes:
        onehot = np.zeros((steps, len(spec.weather_codes)), dtype=np.float32)
        if weather is not None:
            for j, code in enumerate(spec.weather_codes):
                onehot[:, j] = weather == code
        parts.append(np.repeat(onehot[:, None, :], segments, axis=1))
    return np.concatenate(parts, axis=2)


def window_inputs(features: FloatArray, starts: Sequence[int], window: int) -> WindowInputs:
    """Inputs for every segment of the windows beginning at ``starts`` (window-major order)."""
    start_array = np.asarray(starts, dtype=np.int64)
    segments = features.shape[1]
    index = start_array[:, None] + np.arange(window)[None, :]
    steps = features[index]  # n x window x segments x features
    steps = np.transpose(steps, (0, 2, 1, 3)).reshape(-1, window, features.shape[2])
    observed = steps[:, :, 1]
    counts = observed.sum(axis=1)
    base = np.where(counts > 0, (steps[:, :, 0] * observed).sum(axis=1) / np.maximum(counts, 1), 0)
    return WindowInputs(
        steps=np.ascontiguousarray(steps, dtype=np.float32),
        segment=np.tile(np.arange(segments, dtype=np.int64), len(start_array)),
        base=base.astype(np.float32),
    )
