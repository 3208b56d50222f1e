"""`roadsense forecast evaluate`: train on the past, score on the future, against baselines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from roadsense.models.evaluation import historical_average, persistence, score, split_point, windows
from roadsense.models.forecast.series import Series
from roadsense.models.training.forecast.forecaster import (
    ForecasterSettings,
    GruForecaster,
    Progress,
)


def slice_series(series: Series, start: int, stop: int) -> Series:
    """Rows [start, stop) of a series."""
    return replace(
        series,
        values=series.values[start:stop],
        observed=series.observed[start:stop],
        times=series.times[start:stop],
        weather=series.weather[start:stop] if series.weather is not None else None,
    )


def evaluate(
    series: Series,
    settings: ForecasterSettings,
    train_fraction: float = 0.8,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Figures per horizon (steps), then per model, then per metric.

    ``gru``: the T-GCN protocol's unmasked metrics (rmse, mae, accuracy, r2, var,
    rmse_at_step) score the expected recorded value, observed_probability x speed,
    against the recorded series with its zeros; masked_rmse/masked_mae score the
    speed forecast on observed targets. ``gru_speed`` scores the speed forecast
    alone on every metric. ``ha`` and ``persistence`` are the reference baselines.
    """
    cut = split_point(series.steps, train_fraction)
    train = slice_series(series, 0, cut)
    test = slice_series(series, cut, series.steps)
    model = GruForecaster(settings)
    training = model.fit(train, progress)
    results: dict[str, Any] = {}
    for horizon in settings.horizons:
        inputs, targets = windows(test.values, settings.window, horizon)
        observed = targets > 0
        forecast = model.predict_windows(test, range(len(inputs)))
        speed = forecast.speed[:, :horizon, :]
        gru = score(targets, forecast.expected[:, :horizon, :], observed)
        masked = score(targets, speed, observed)
        gru.update(masked_rmse=masked["masked_rmse"], masked_mae=masked["masked_mae"])
        figures = {
            "gru": gru,
            "gru_speed": masked,
            "ha": score(targets, historical_average(inputs, horizon), observed),
            "persistence": score(targets, persistence(inputs, horizon), observed),
        }
        results[str(horizon)] = {
            name: {k: round(v, 4) for k, v in values.items()} for name, values in figures.items()
        }
    results["training"] = {k: round(v, 6) for k, v in training.items()}
    return results
