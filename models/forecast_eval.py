"""`roadsense forecast evaluate`: train on the past, score on the future, against baselines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from roadsense.models.evaluation import historical_average, persistence, score, split_point, windows
from roadsense.models.forecaster import ForecasterSettings, GruForecaster, Progress
from roadsense.models.series import Series


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
    """Figures per horizon (steps), then per model (gru, ha, persistence), then per metric."""
    cut = split_point(series.steps, train_fraction)
    train = slice_series(series, 0, cut)
    test = slice_series(series, cut, series.steps)
    model = GruForecaster(settings)
    training = model.fit(train, progress)
    results: dict[str, Any] = {}
    for horizon in settings.horizons:
        inputs, targets = windows(test.values, settings.window, horizon)
        observed = targets > 0
        predictions = {
            "gru": model.predict_windows(test, range(len(inputs)))[:, :horizon, :],
            "ha": historical_average(inputs, horizon),
            "persistence": persistence(inputs, horizon),
        }
        results[str(horizon)] = {
            name: {k: round(v, 4) for k, v in score(targets, p, observed).items()}
            for name, p in predictions.items()
        }
    results["training"] = {k: round(v, 6) for k, v in training.items()}
    return results
