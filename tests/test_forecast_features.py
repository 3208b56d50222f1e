"""The forecaster's torch-free inputs: time-of-day slots, window inputs, the daily profile."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from roadsense.models.forecast_features import FeatureSpec, time_slots, window_inputs
from roadsense.models.forecast_profile import daily_profile


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
