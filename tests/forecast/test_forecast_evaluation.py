"""Series loading, windowing, metrics and baselines: hand-made cases and BASELINES.md §4b."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from roadsense.models.evaluation import (
    historical_average,
    metrics,
    persistence,
    score,
    split_point,
    windows,
)
from roadsense.models.forecast.series import SeriesError, load_series
from roadsense.models.shipped import SZ_SPEEDS, SZ_WEATHER


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "speeds.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_zeros_are_masked_and_dates_parsed(tmp_path: Path) -> None:
    series = load_series(_csv(tmp_path, "date,a,b\n1/1/2015 0:00,10,0\n1/1/2015 0:15,0,7.5\n"))
    assert series.segment_ids == ["a", "b"]
    np.testing.assert_array_equal(series.values, [[10, 0], [0, 7.5]])
    np.testing.assert_array_equal(series.observed, [[True, False], [False, True]])
    assert series.times[1] == datetime(2015, 1, 1, 0, 15, tzinfo=timezone.utc)


def test_times_from_start_and_interval(tmp_path: Path) -> None:
    path = _csv(tmp_path, "a,b\n1,2\n3,4\n5,6\n")
    with pytest.raises(SeriesError, match="no date column; give the start time and interval"):
        load_series(path)
    series = load_series(path, start=datetime(2026, 1, 1), interval_min=5)
    assert [t.minute for t in series.times] == [0, 5, 10]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("date,a\n1/1/2015 0:00,fast\n", "row 2, segment a: 'fast' is not a number"),
        ("date,a\n1/1/2015 0:00,-3\n", "row 2, segment a: '-3' is not a finite value >= 0"),
        ("date,a,b\n1/1/2015 0:00,1\n", "row 2 has 2 cells, the header 3"),
        ("date,a\nyesterday,1\n", "row 2: date 'yesterday' is not a time"),
        ("date,a,a\n1/1/2015 0:00,1,2\n", "segment ids repeat"),
    ],
)
def test_bad_series_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SeriesError, match=message):
        load_series(_csv(tmp_path, text))


def test_windows_match_the_reference_cut() -> None:
    part = np.arange(8, dtype=float).reshape(8, 1)
    inputs, targets = windows(part, seq_len=3, pre_len=2)
    # range(8 - 3 - 2) = 3 windows: the last possible one is dropped, as in T-GCN's code.
    np.testing.assert_array_equal(inputs[:, :, 0], [[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    np.testing.assert_array_equal(targets[:, :, 0], [[3, 4], [4, 5], [5, 6]])


def test_baselines_on_a_hand_made_window() -> None:
    inputs = np.array([[[2.0], [4.0], [6.0], [8.0]]])  # one window, one segment
    np.testing.assert_allclose(historical_average(inputs, 2)[0, :, 0], [5.0, 5.75])
    np.testing.assert_array_equal(persistence(inputs, 3)[0, :, 0], [8.0, 8.0, 8.0])


def test_metrics_equal_hand_computed_values() -> None:
    truth = np.array([[[3.0, 0.0]], [[5.0, 4.0]]])  # 2 windows x 1 step x 2 segments
    prediction = np.array([[[2.0, 1.0]], [[5.0, 2.0]]])
    observed = truth > 0
    m = metrics(truth, prediction, observed)
    errors = np.array([1.0, -1.0, 0.0, 2.0])
    assert m["rmse"] == pytest.approx(np.sqrt(6 / 4))
    assert m["mae"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(1 - np.sqrt(6) / np.sqrt(9 + 25 + 16))
    assert m["r2"] == pytest.approx(1 - 6 / np.sum((np.array([3, 0, 5, 4]) - 3) ** 2))
    assert m["var"] == pytest.approx(1 - np.var(errors) / np.var([3, 0, 5, 4]))
    assert m["masked_rmse"] == pytest.approx(np.sqrt(5 / 3))  # the zero target is ignored
    assert m["masked_mae"] == pytest.approx(1.0)


# BASELINES.md §4b: protocol of §1 on the 40-road subset, zeros kept as targets.
EXPECTED = {
    1: {
        "ha": (5.0833, 3.5540, 0.7118, 0.7217, 0.7217),
        "persistence": (6.2376, 4.2821, 0.6464, 0.5810, 0.5810),
    },
    2: {
        "ha": (5.1708, 3.6182, 0.7068, 0.7120, 0.7120),
        "persistence": (6.3128, 4.3415, 0.6421, 0.5708, 0.5708),
    },
    3: {
        "ha": (5.2437, 3.6746, 0.7027, 0.7039, 0.7039),
        "persistence": (6.3457, 4.3848, 0.6402, 0.5663, 0.5663),
    },
    4: {
        "ha": (5.3075, 3.7220, 0.6991, 0.6967, 0.6967),
        "persistence": (6.3940, 4.4290, 0.6375, 0.5598, 0.5598),
    },
}
WINDOWS = {1: 591, 2: 590, 3: 589, 4: 588}


@pytest.mark.parametrize("pre_len", [1, 2, 3, 4])
def test_baselines_reproduce_the_published_subset_figures(pre_len: int) -> None:
    series = load_series(SZ_SPEEDS, weather_path=SZ_WEATHER)
    assert series.values.shape == (2976, 40)
    assert series.weather is not None
    assert set(np.unique(series.weather)) == {1, 2, 3, 4, 5}
    test = series.values[split_point(series.steps, 0.8) :]
    inputs, targets = windows(test, seq_len=4, pre_len=pre_len)
    assert len(inputs) == WINDOWS[pre_len]
    for name, model in (("ha", historical_average), ("persistence", persistence)):
        figures = score(targets, model(inputs, pre_len), targets > 0)
        got = tuple(round(figures[k], 4) for k in ("rmse", "mae", "accuracy", "r2", "var"))
        assert got == EXPECTED[pre_len][name], (name, pre_len)
