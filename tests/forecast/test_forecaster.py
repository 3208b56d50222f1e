"""The GRU forecaster: a tiny training run on CPU, the evaluate command's output."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from roadsense.models.forecast.series import Series
from roadsense.models.training.forecast.evaluate import evaluate
from roadsense.models.training.forecast.forecaster import ForecasterSettings, GruForecaster

from ..support.helpers import roadsense_cli


def _daily_series(days: int = 6, segments: int = 3, missing: float = 0.05) -> Series:
    """Speeds with a daily rhythm per segment and some missing observations."""
    rng = np.random.default_rng(0)
    steps = days * 96
    t = np.arange(steps)
    base = 40 + 15 * np.sin(2 * np.pi * t / 96)[:, None] + np.arange(segments)[None, :] * 5
    values = base + rng.normal(0, 1.0, size=base.shape)
    values[rng.random(values.shape) < missing] = 0.0
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    return Series(
        segment_ids=[f"s{i}" for i in range(segments)],
        values=values,
        observed=values > 0,
        times=[start + timedelta(minutes=15 * i) for i in range(steps)],
        weather=None,
    )


def test_a_tiny_run_learns_the_rhythm_better_than_persistence() -> None:
    settings = ForecasterSettings(window=4, horizons=(1, 4), hidden=16, epochs=15, patience=15)
    results = evaluate(_daily_series(), settings, train_fraction=0.7)
    assert set(results) == {"1", "4", "training"}
    for horizon in ("1", "4"):
        assert set(results[horizon]) == {"gru", "gru_speed", "ha", "persistence"}
        assert set(results[horizon]["gru"]) == {
            "rmse",
            "mae",
            "accuracy",
            "r2",
            "var",
            "masked_rmse",
            "masked_mae",
            "rmse_at_step",
        }
    # Four steps ahead the daily wave has moved: the GRU, which sees the time of
    # day, must do better than repeating the last value.
    assert results["4"]["gru"]["masked_rmse"] < results["4"]["persistence"]["masked_rmse"]


def test_missing_inputs_are_flagged_not_read_as_zero_speed() -> None:
    series = _daily_series(days=3, segments=2, missing=0.0)
    model = GruForecaster(ForecasterSettings(window=4, horizons=(1,), hidden=8, epochs=1))
    model.fit(series)
    features = model._step_features(series)
    assert features.shape == (series.steps, 2, 2 + 4)
    gappy = _daily_series(days=3, segments=2, missing=0.3)
    gap_features = model._step_features(gappy)
    missing = ~gappy.observed
    assert np.all(gap_features[missing][:, 0] == 0.0)  # normalised value zeroed
    assert np.all(gap_features[missing][:, 1] == 0.0)  # and flagged missing
    assert np.all(gap_features[gappy.observed][:, 1] == 1.0)


def test_the_probability_head_learns_a_segment_that_is_never_observed() -> None:
    series = _daily_series(days=4, segments=3, missing=0.0)
    values = series.values.copy()
    values[:, 2] = 0.0
    gappy = replace(series, values=values, observed=values > 0)
    settings = ForecasterSettings(
        window=4, horizons=(1, 2), hidden=8, epochs=10, patience=10, batch_size=64
    )
    model = GruForecaster(settings)
    model.fit(gappy)
    forecast = model.predict_windows(gappy, range(10))
    probability = forecast.observed_probability
    assert probability.shape == (10, 2, 3)
    assert np.all(probability[:, :, 2] < 0.1)
    assert np.all(probability[:, :, :2] > 0.9)
    # The expected recorded value of the never-observed segment is close to 0.
    assert np.all(np.abs(forecast.expected[:, :, 2]) < 0.1 * np.abs(forecast.speed[:, :, 2]))


def test_predict_needs_a_fitted_model() -> None:
    with pytest.raises(RuntimeError, match="fit"):
        GruForecaster(ForecasterSettings()).predict_windows(_daily_series(), range(2))


def test_evaluate_command_prints_json_last(tmp_path: Path) -> None:
    series = _daily_series(days=4, segments=2)
    rows = ["a,b"] + [f"{v[0]:.3f},{v[1]:.3f}" for v in series.values]
    path = tmp_path / "speeds.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = roadsense_cli(
        "forecast",
        "evaluate",
        "--speeds",
        str(path),
        "--start",
        "2026-01-05T00:00:00",
        "--interval-min",
        "15",
        "--window",
        "4",
        "--horizons",
        "1,2",
        "--epochs",
        "2",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(figures) == {"1", "2", "training"}
    assert figures["2"]["ha"]["rmse"] > 0


def test_evaluate_command_refuses_bad_arguments(tmp_path: Path) -> None:
    result = roadsense_cli(
        "forecast", "evaluate", "--speeds", str(tmp_path / "x.csv"), "--horizons", "1,x"
    )
    assert result.returncode == 2
    assert "expected steps like 1,2,3,4" in result.stderr
    missing = roadsense_cli("forecast", "evaluate", "--speeds", str(tmp_path / "x.csv"))
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == f"roadsense: error: {tmp_path / 'x.csv'}: cannot read: No such file or directory"
    )


def test_train_exports_onnx_matching_torch_with_a_card(tmp_path: Path) -> None:
    series = _daily_series(days=4, segments=2)
    rows = ["date,a,b"] + [
        f"{t:%Y-%m-%d %H:%M},{v[0]:.3f},{v[1]:.3f}"
        for t, v in zip(series.times, series.values, strict=True)
    ]
    path = tmp_path / "speeds.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    result = roadsense_cli(
        "train",
        "forecaster",
        "--speeds",
        str(path),
        "--window",
        "4",
        "--horizons",
        "1,2",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--version",
        "test-1",
        "--provenance",
        "synthetic",
    )
    assert result.returncode == 0, result.stderr
    card = json.loads((out / "forecaster.card.json").read_text())
    assert card["onnx_torch_max_abs_difference"] <= 1e-4
    assert card["segment_ids"] == ["a", "b"]
    assert card["window"] == 4
    assert card["horizons"] == [1, 2]
    assert card["interval_min"] == 15
    assert card["version"] == "test-1"
    assert card["data_provenance"] == "synthetic"
    assert set(card["evaluation"]) == {"1", "2", "training"}
    assert card["normalisation"]["std"] > 0
    session = ort.InferenceSession(str(out / "forecaster.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["forecast", "observed_probability"]
    forecast, probability = session.run(
        None,
        {
            "steps": np.zeros((3, 4, 6), dtype=np.float32),
            "segment": np.array([0, 1, 0], dtype=np.int64),
            "base": np.zeros(3, dtype=np.float32),
            "slots": np.zeros((3, 4 + 2), dtype=np.int64),
        },
    )
    assert np.asarray(forecast).shape == (3, 2)
    assert np.all((np.asarray(probability) > 0) & (np.asarray(probability) < 1))
    assert set(card["outputs"]) == {"forecast", "observed_probability"}
    assert card["slots_per_day"] == 96


def test_shipped_forecaster_card_matches_its_model() -> None:
    from roadsense.models.card import sha256_file
    from roadsense.models.shipped import DEFAULT_FORECASTER

    card = json.loads(DEFAULT_FORECASTER.with_suffix(".card.json").read_text())
    assert sha256_file(DEFAULT_FORECASTER) == card["onnx_sha256"]
    assert card["onnx_torch_max_abs_difference"] <= 1e-4
    assert len(card["segment_ids"]) == 40
    assert card["horizons"] == [1, 2, 3, 4]
    # Its own evaluation beats historical average at every horizon (RMSE).
    for horizon in ("1", "2", "3", "4"):
        figures = card["evaluation"][horizon]
        assert figures["gru"]["rmse"] < figures["ha"]["rmse"]
    # The T-GCN authors' own predictions on these 40 roads score 4.8706 (BASELINES.md §4b).
    assert card["evaluation"]["1"]["gru"]["rmse"] < 4.8706


def test_shipped_forecaster_runs_on_a_feed_built_from_its_card() -> None:
    from roadsense.models.forecast.features import (
        FeatureSpec,
        step_features,
        time_slots,
        window_inputs,
    )
    from roadsense.models.forecast.series import load_series
    from roadsense.models.shipped import DEFAULT_FORECASTER, SZ_SPEEDS, SZ_WEATHER

    card = json.loads(DEFAULT_FORECASTER.with_suffix(".card.json").read_text())
    spec = FeatureSpec(
        card["normalisation"]["mean"],
        card["normalisation"]["std"],
        tuple(card["weather_codes"]),
        card["interval_min"],
    )
    assert spec.names == card["features"]
    assert spec.slots_per_day == card["slots_per_day"]
    series = load_series(SZ_SPEEDS, weather_path=SZ_WEATHER)
    recent = slice(series.steps - card["window"], series.steps)
    features = step_features(
        spec,
        series.values[recent],
        series.observed[recent],
        series.times[recent],
        series.weather[recent] if series.weather is not None else None,
    )
    inputs = window_inputs(
        spec,
        features,
        time_slots(spec, series.times[recent]),
        starts=[0],
        window=card["window"],
        horizon=max(card["horizons"]),
    )
    session = ort.InferenceSession(str(DEFAULT_FORECASTER), providers=["CPUExecutionProvider"])
    forecast, probability = session.run(None, dict(inputs.feed()))
    speeds = np.asarray(forecast) * spec.std + spec.mean
    assert speeds.shape == probability.shape == (40, 4)
    assert np.all((speeds > 0) & (speeds < 120))
    assert np.all((np.asarray(probability) >= 0) & (np.asarray(probability) <= 1))
