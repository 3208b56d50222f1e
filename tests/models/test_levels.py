"""Hand-worked tests of the level rule's fitting and its leave-one-camera-out scoring
(roadsense.models.detection.levels)."""

from __future__ import annotations

import math

import pytest

from roadsense.models.detection.levels import (
    PRIOR,
    LabelledMeasure,
    Measure,
    Sampled,
    bootstrap_interval,
    choose,
    evaluate,
    fit_thresholds,
    loco,
    median_thresholds,
    nearest_measure,
    score_table,
    threshold_grid,
    window_measure,
)
from roadsense.models.detection.rule import RuleThresholds

# one clip sampled every 5th frame at 25 fps (0.2 s apart)
CLIP = [
    Sampled(frame=0, t_s=0.0, vehicles=2, stopped=0, occupancy=0.10),
    Sampled(frame=5, t_s=0.2, vehicles=4, stopped=0, occupancy=0.20),
    Sampled(frame=10, t_s=0.4, vehicles=0, stopped=0, occupancy=0.0),
]


def item(camera: str, label: str, occupancy: float, stopped: float = 0.0) -> LabelledMeasure:
    return LabelledMeasure(camera, camera + ".mp4", 0, label, Measure(occupancy, stopped, 1.0))


def test_nearest_takes_the_closest_sample_and_the_earlier_on_a_tie() -> None:
    assert nearest_measure(CLIP, 6) == Measure(0.20, 0.0, 4.0)
    # frame 7 is 2 from frame 5 and 3 from frame 10
    assert nearest_measure(CLIP, 7).occupancy == 0.20
    # samples at 0 and 4: frame 2 is 2 from each -> the earlier; frame 3 -> frame 4
    pair = [CLIP[0], Sampled(4, 0.16, 1, 1, 0.5)]
    assert nearest_measure(pair, 2).occupancy == 0.10
    assert nearest_measure(pair, 3) == Measure(0.5, 1.0, 1.0)


def test_nearest_stopped_share_is_stopped_over_vehicles_and_zero_on_an_empty_road() -> None:
    clip = [Sampled(0, 0.0, 4, 3, 0.3), Sampled(5, 0.2, 0, 0, 0.0)]
    assert nearest_measure(clip, 0).stopped_share == 0.75
    assert nearest_measure(clip, 5).stopped_share == 0.0


def test_window_averages_the_samples_up_to_the_frame() -> None:
    # frame 7 at 0.28 s: samples 0 and 5 are in, 10 is after it
    m = window_measure(CLIP, 7, 0.28)
    assert m.occupancy == pytest.approx(0.15)
    assert m.vehicles == pytest.approx(3.0)
    assert m.stopped_share == 0.0


def test_window_drops_samples_older_than_the_window() -> None:
    # a 0.3 s window ending at 0.4 s keeps t > 0.1: frames 5 and 10
    m = window_measure(CLIP, 10, 0.4, window_s=0.3)
    assert m.occupancy == pytest.approx(0.10)
    assert m.vehicles == pytest.approx(2.0)


def test_window_stopped_share_uses_only_samples_with_a_stopped_history() -> None:
    clip = [
        Sampled(0, 0.0, 4, 0, 0.2),  # cold: no sample 2 s back, every box reads moving
        Sampled(50, 2.0, 4, 3, 0.2),
        Sampled(55, 2.2, 2, 1, 0.2),
    ]
    # warm samples: stopped 3 + 1 over vehicles 4 + 2
    assert window_measure(clip, 55, 2.2).stopped_share == pytest.approx(4 / 6)
    # a window of cold samples only falls back to them
    assert window_measure(clip, 0, 0.0).stopped_share == 0.0


def test_grid_rises_and_contains_the_defaults() -> None:
    grid = threshold_grid()
    assert RuleThresholds() in grid
    for t in grid:
        assert t.light_occupancy < t.moderate_occupancy < t.heavy_occupancy < t.jam_occupancy
    small = threshold_grid(((0.1, 0.2), (0.2, 0.3), (0.4,), (0.5,)), ((0.5,), (0.3,), (0.6,)))
    # (0.1,0.2), (0.1,0.3), (0.2,0.3); (0.2,0.2) is not strictly rising
    assert len(small) == 3


def test_evaluate_counts_agreement_and_gross_per_camera_and_averages_cameras() -> None:
    t = PRIOR  # light 0.05, moderate 0.15, heavy 0.30 (stopped 0.3), jam 0.45 (stopped 0.6)
    items = [
        item("a", "light", 0.10),  # light: right
        item("a", "heavy", 0.10),  # light: two off -> gross
        item("a", "moderate", 0.20),  # moderate: right
        item("a", "jammed", 0.20),  # moderate: two off -> gross
        item("b", "heavy", 0.35, stopped=0.4),  # heavy: right
        item("b", "jammed", 0.50, stopped=0.2),  # dense and moving: heavy, one off
    ]
    e = evaluate(items, t)
    assert e.per_camera["a"].agreement == 0.5
    assert e.per_camera["a"].gross == 0.5
    assert e.per_camera["b"].agreement == 0.5
    assert e.per_camera["b"].gross == 0.0
    # camera a has 4 frames, b 2: each camera weighs the same
    assert e.agreement == 0.5
    assert e.gross == 0.25


def _two_cameras() -> list[LabelledMeasure]:
    # camera a: light at 0.06 and 0.09; camera b: moderate at 0.12, light at 0.03
    return [
        item("a", "light", 0.06),
        item("a", "light", 0.09),
        item("b", "moderate", 0.12),
        item("b", "light", 0.03),
    ]


def test_fit_picks_the_moderate_threshold_that_separates_the_labels() -> None:
    grid = threshold_grid(((0.02,), (0.05, 0.10, 0.15), (0.30,), (0.45,)), ((0.5,), (0.3,), (0.6,)))
    fit = fit_thresholds(_two_cameras(), grid)
    # 0.05: a 0/2, b 1/2 -> 0.25; 0.10: a 2/2, b 2/2 -> 1.0; 0.15: a 1, b 1/2 -> 0.75
    assert fit.thresholds.moderate_occupancy == 0.10
    assert fit.agreement == 1.0


def test_ties_go_to_fewer_gross_errors_then_to_the_defaults() -> None:
    # one camera, labels light and heavy at 0.10 and 0.40 (stopped 0.4)
    items = [item("a", "light", 0.10), item("a", "heavy", 0.40, stopped=0.4)]
    # all three tie at 0.5 with no gross error: the distance to the defaults decides
    grid = [
        RuleThresholds(0.05, 0.08, 0.30, 0.45),  # light->moderate, heavy->heavy: 0.5, 0
        RuleThresholds(0.05, 0.15, 0.50, 0.60),  # light->light, heavy->moderate: 0.5, 0
        RuleThresholds(0.20, 0.25, 0.50, 0.60),  # light->light (1 vehicle), heavy->moderate
    ]
    table = score_table(items, grid)
    assert table.agreement[:, 0].tolist() == [0.5, 0.5, 0.5]
    # nearest the defaults: grid[0] differs by 0.07, grid[1] by 0.35, grid[2] by 0.65
    assert choose(table, ["a"]) == 0
    # a third frame that grid[0] alone gets right breaks the tie on agreement
    items2 = [*items, item("a", "moderate", 0.09)]
    table2 = score_table(items2, grid)
    # 0.09 -> moderate under grid[0] (right), light under grid[1] and grid[2] (one off)
    assert choose(table2, ["a"]) == 0
    items3 = [*items, item("a", "free", 0.09)]
    # 0.09 -> moderate under grid[0] (two off: gross), light under 1, 2 (one off)
    # agreement 1/3 for all; grid[0] has a gross error -> grid[1] (nearer the defaults)
    table3 = score_table(items3, grid)
    assert table3.agreement[:, 0] == pytest.approx([1 / 3] * 3)
    assert choose(table3, ["a"]) == 1


def test_score_table_matches_evaluate() -> None:
    items = _two_cameras()
    grid = threshold_grid(((0.02,), (0.05, 0.10, 0.15), (0.30,), (0.45,)), ((0.5,), (0.3,), (0.6,)))
    table = score_table(items, grid)
    for g, t in enumerate(grid):
        e = evaluate(items, t)
        for c, camera in enumerate(table.cameras):
            assert table.agreement[g, c] == pytest.approx(e.per_camera[camera].agreement)
            assert table.gross[g, c] == pytest.approx(e.per_camera[camera].gross)


def test_loco_fits_without_the_held_out_camera() -> None:
    # a: light 0.06 (wants moderate >= 0.10); b: moderate 0.06 (wants moderate <= 0.05);
    # c: light 0.09 (wants moderate >= 0.10)
    items = [item("a", "light", 0.06), item("b", "moderate", 0.06), item("c", "light", 0.09)]
    second = [item("b", "light", 0.06)]
    grid = threshold_grid(((0.02,), (0.05, 0.10), (0.30,), (0.45,)), ((0.5,), (0.3,), (0.6,)))
    result = loco(items, second, grid)
    rows = {r.camera: r for r in result.rows}
    # holding out b: a and c both want 0.10, so b (moderate) is called light: wrong
    assert rows["b"].thresholds.moderate_occupancy == 0.10
    assert rows["b"].first.agreement == 0.0
    # ...and the second labeller, who says light for b, agrees
    assert rows["b"].second is not None
    assert rows["b"].second.agreement == 1.0
    # holding out a: c wants 0.10, b wants 0.05 -> tie 0.5; no gross; nearer the
    # default moderate 0.15 is 0.10 -> a right
    assert rows["a"].thresholds.moderate_occupancy == 0.10
    assert rows["a"].first.agreement == 1.0
    assert result.means["agreement"] == pytest.approx(2 / 3)
    # a and c have no second labels: their second scores are left out of the mean
    assert result.means["agreement_second"] == 1.0
    assert rows["a"].second is None
    for r in result.rows:  # each fold equals fit_thresholds on the other cameras
        others = [i for i in items if i.camera != r.camera]
        assert fit_thresholds(others, grid).thresholds == r.thresholds


def test_bootstrap_interval() -> None:
    assert bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    low, high = bootstrap_interval([0.0, 1.0, 0.0, 1.0, math.nan])
    assert 0.0 <= low < 0.5 < high <= 1.0
    assert all(math.isnan(v) for v in bootstrap_interval([math.nan]))


def test_median_thresholds_per_field() -> None:
    chosen = [
        RuleThresholds(0.02, 0.10, 0.20, 0.35, 0.3, 0.15, 0.4),
        RuleThresholds(0.05, 0.15, 0.30, 0.45, 0.5, 0.30, 0.6),
        RuleThresholds(0.08, 0.10, 0.35, 0.80, 0.7, 0.15, 0.8),
    ]
    assert median_thresholds(chosen) == RuleThresholds(0.05, 0.10, 0.30, 0.45, 0.5, 0.15, 0.6)
