"""The forecaster's torch-free inputs: time-of-day slots, window inputs, the daily profile."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from roadsense.core.errors import ModelLoadError
from roadsense.models.card import card_path_for
from roadsense.models.forecast.features import FeatureSpec, step_features, time_slots, window_inputs
from roadsense.models.forecast.profile import daily_profile
from roadsense.models.forecast.runtime import OnnxForecaster
from roadsense.models.forecast.series import SeriesError, load_series
from roadsense.models.shipped import DEFAULT_FORECASTER


def test_time_slots_follow_the_interval_and_wrap_at_midnight() -> None:
    spec = FeatureSpec(mean=0.0, std=1.0, interval_min=360.0)
    start = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
    times = [start + timedelta(hours=6 * i) for i in range(4)]
    assert spec.slots_per_day == 4
    np.testing.assert_array_equal(time_slots(spec, times), [2, 3, 0, 1])


def test_window_inputs_continue_the_slots_past_the_window() -> None:
    spec = FeatureSpec(mean=0.0, std=1.0, interval_min=360.0)
    features = np.zeros((5, 2, 6), dtype=np.float32)
    features[:, :, 1] = 1.0  # all observed
    features[:, 0, 0] = [1, 2, 3, 4, 5]
    slots = np.array([2, 3, 0, 1, 2], dtype=np.int64)
    inputs = window_inputs(spec, features, slots, starts=[0, 2], window=2, horizon=3)
    # window-major: (window 0, segment 0), (window 0, segment 1), (window 1, ...)
    np.testing.assert_array_equal(inputs.segment, [0, 1, 0, 1])
    np.testing.assert_array_equal(
        inputs.slots, [[2, 3, 0, 1, 2], [2, 3, 0, 1, 2], [0, 1, 2, 3, 0], [0, 1, 2, 3, 0]]
    )
    np.testing.assert_allclose(inputs.base, [1.5, 0.0, 3.5, 0.0])
    assert set(inputs.feed()) == {"steps", "segment", "base", "slots"}


def test_daily_profile_is_the_slot_mean_shrunk_towards_the_segment_mean() -> None:
    # Two slots a day, three days, one segment; the second day's slot 1 is missing.
    values = np.array([[1.0], [5.0], [3.0], [0.0], [2.0], [8.0]])
    observed = values != 0
    slots = np.array([0, 1, 0, 1, 0, 1], dtype=np.int64)
    mean, share = daily_profile(values, observed, slots, slots_per_day=2, half_width=0, prior=0.0)
    np.testing.assert_allclose(mean, [[2.0, 6.5]])
    np.testing.assert_allclose(share, [[1.0, 2 / 3]])
    # Segment mean 19 / 5 = 3.8, observed share 5 / 6; two pseudo-steps of each.
    mean, share = daily_profile(values, observed, slots, slots_per_day=2, half_width=0, prior=2.0)
    np.testing.assert_allclose(mean, [[(6 + 7.6) / 5, (13 + 7.6) / 4]], rtol=1e-6)
    np.testing.assert_allclose(share, [[(3 + 5 / 3) / 5, (2 + 5 / 3) / 5]], rtol=1e-6)


def test_daily_profile_smooths_over_neighbouring_slots_round_midnight() -> None:
    # Four slots, one day: slot 0 wraps to slot 3; a segment never observed gets 0 and 0.
    values = np.array([[4.0, 0.0], [0.0, 0.0], [2.0, 0.0], [6.0, 0.0]])
    mean, share = daily_profile(
        values, values != 0, np.arange(4), slots_per_day=4, half_width=1, prior=0.0
    )
    np.testing.assert_allclose(mean[0], [(6 + 4) / 2, (4 + 2) / 2, (2 + 6) / 2, (2 + 6 + 4) / 3])
    np.testing.assert_allclose(share[0], [2 / 3, 2 / 3, 2 / 3, 1.0])
    np.testing.assert_array_equal(mean[1], [0, 0, 0, 0])
    np.testing.assert_array_equal(share[1], [0, 0, 0, 0])


def test_time_features_follow_the_models_time_zone() -> None:
    instant = [datetime(2014, 12, 31, 16, 0, tzinfo=timezone.utc)]  # midnight in Shenzhen
    shenzhen = FeatureSpec(0.0, 1.0, interval_min=15.0, time_zone="Asia/Shanghai")
    utc = FeatureSpec(0.0, 1.0, interval_min=15.0)
    assert time_slots(shenzhen, instant).tolist() == [0]
    assert time_slots(utc, instant).tolist() == [64]
    features = step_features(shenzhen, np.ones((1, 1)), np.ones((1, 1), dtype=bool), instant, None)
    # value, observed, then sin/cos of the time of day: midnight is (0, 1).
    np.testing.assert_allclose(features[0, 0, 2:4], [0.0, 1.0], atol=1e-6)


def test_series_clock_times_are_read_in_the_given_zone(tmp_path: Path) -> None:
    csv_file = tmp_path / "speeds.csv"
    csv_file.write_text("date,a\n1/1/2015 0:00,10\n1/1/2015 0:15,11\n")
    series = load_series(csv_file, time_zone="Asia/Shanghai")
    assert series.time_zone == "Asia/Shanghai"
    assert series.times[0] == datetime(2014, 12, 31, 16, 0, tzinfo=timezone.utc)
    with pytest.raises(SeriesError, match="unknown time zone 'Mars/Olympus'"):
        load_series(csv_file, time_zone="Mars/Olympus")


def test_a_forecaster_card_with_an_unknown_zone_is_refused(tmp_path: Path) -> None:
    onnx = tmp_path / "forecaster.onnx"
    shutil.copy(DEFAULT_FORECASTER, onnx)
    card = json.loads(card_path_for(DEFAULT_FORECASTER).read_text())
    assert OnnxForecaster(DEFAULT_FORECASTER).card.spec.time_zone == card.get("time_zone", "UTC")
    card["time_zone"] = "Mars/Olympus"
    card_path_for(onnx).write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="unknown time_zone 'Mars/Olympus'"):
        OnnxForecaster(onnx)
