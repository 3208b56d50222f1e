"""The exported forecaster in ONNX Runtime, without torch: what the cloud serves.

``OnnxForecaster`` loads ``forecaster.onnx`` with the card beside it
(``forecaster.card.json``, pinned by sha256), turns one input window of raw
values into the network's inputs with the same code training used
(``features``) and forecasts every segment it knows in one batched
call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from roadsense.core.errors import ModelLoadError
from roadsense.models.card import card_path_for, sha256_file
from roadsense.models.forecast.features import (
    FeatureSpec,
    step_features,
    time_slots,
    window_inputs,
)

FORECAST_OUTPUT = "forecast"
PROBABILITY_OUTPUT = "observed_probability"


@dataclass(frozen=True)
class ForecastCard:
    """What the server needs from a forecaster's card."""

    version: str
    window: int
    horizons: tuple[int, ...]
    interval_ms: int
    spec: FeatureSpec
    segment_ids: tuple[str, ...]
    onnx_sha256: str


def _card(onnx_path: Path) -> ForecastCard:
    card_path = card_path_for(onnx_path)
    try:
        data: dict[str, Any] = json.loads(card_path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ModelLoadError(f"{card_path}: cannot read forecaster card: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{card_path}: forecaster card is not valid JSON: {err}") from err
    try:
        normalisation = data["normalisation"]
        card = ForecastCard(
            version=str(data["version"]),
            window=int(data["window"]),
            horizons=tuple(int(h) for h in data["horizons"]),
            interval_ms=round(float(data["interval_min"]) * 60_000),
            spec=FeatureSpec(
                float(normalisation["mean"]),
                float(normalisation["std"]),
                tuple(int(c) for c in data.get("weather_codes", [])),
                float(data["interval_min"]),
                str(data.get("time_zone", "UTC")),
            ),
            segment_ids=tuple(str(s) for s in data["segment_ids"]),
            onnx_sha256=str(data["onnx_sha256"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(f"{card_path}: not a forecaster card ({err!r} is wrong)") from err
    if card.window < 1 or not card.horizons or card.interval_ms <= 0 or not card.segment_ids:
        raise ModelLoadError(f"{card_path}: window, horizons, interval or segment_ids is empty")
    if list(card.spec.names) != list(data.get("features", card.spec.names)):
        raise ModelLoadError(f"{card_path}: its features are not the ones this version builds")
    try:
        ZoneInfo(card.spec.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ModelLoadError(f"{card_path}: unknown time_zone {card.spec.time_zone!r}") from None
    if int(data.get("slots_per_day", card.spec.slots_per_day)) != card.spec.slots_per_day:
        raise ModelLoadError(f"{card_path}: slots_per_day does not match interval_min")
    return card


@dataclass(frozen=True)
class Forecast:
    """One window's forecasts for every segment of the model, de-normalised."""

    values: npt.NDArray[np.float64]
    """segments x max(horizons): value given an observation"""
    observed_probability: npt.NDArray[np.float64] | None
    """segments x max(horizons), or None when the model does not estimate it"""


class OnnxForecaster:
    """A loaded forecaster: its card and an ONNX Runtime session."""

    def __init__(self, onnx_path: str | Path, threads: int = 1) -> None:
        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: forecaster model not found")
        self.card = _card(self.path)
        actual = sha256_file(self.path)
        if actual != self.card.onnx_sha256:
            raise ModelLoadError(
                f"{self.path}: sha256 {actual[:12]}… does not match its card "
                f"({self.card.onnx_sha256[:12]}…); the model and card are from different exports"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:
            raise ModelLoadError(f"{self.path}: ONNX Runtime cannot load it: {err}") from err
        outputs = {o.name for o in self._session.get_outputs()}
        if FORECAST_OUTPUT not in outputs:
            raise ModelLoadError(f"{self.path}: no {FORECAST_OUTPUT!r} output")
        self._outputs = [
            FORECAST_OUTPUT,
            *([PROBABILITY_OUTPUT] if PROBABILITY_OUTPUT in outputs else []),
        ]
        self.index = {segment: i for i, segment in enumerate(self.card.segment_ids)}

    @property
    def version(self) -> str:
        """Model version from the card."""
        return self.card.version

    def weather_code(self, code: str | None) -> int:
        """A stored weather code as the model's integer code (-1: unknown to the model)."""
        try:
            value = int(code) if code is not None else -1
        except ValueError:
            return -1
        return value if value in self.card.spec.weather_codes else -1

    def predict(
        self,
        values: npt.NDArray[np.float64],
        observed: npt.NDArray[np.bool_],
        times: Sequence[datetime],
        weather: npt.NDArray[np.int64] | None = None,
    ) -> Forecast:
        """Forecast from one window (window x segments, in the card's segment order)."""
        window, segments = values.shape
        if window != self.card.window or segments != len(self.card.segment_ids):
            raise ValueError(
                f"inputs are {window} x {segments}; the model wants "
                f"{self.card.window} x {len(self.card.segment_ids)}"
            )
        spec = self.card.spec
        features = step_features(spec, values, observed, times, weather)
        inputs = window_inputs(
            spec,
            features,
            time_slots(spec, times),
            starts=[0],
            window=window,
            horizon=max(self.card.horizons),
        )
        results = self._session.run(self._outputs, inputs.feed())
        forecast = np.asarray(results[0], dtype=np.float64) * self.card.spec.std
        probability = np.asarray(results[1], dtype=np.float64) if len(results) > 1 else None
        return Forecast(forecast + self.card.spec.mean, probability)
