"""The rollout's pure parts: divergence, verdict, canary size, stages, --canary, config."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from roadsense.cli.rollout import parse_canary
from roadsense.cloud.config import CloudConfig
from roadsense.cloud.rollout.config import RolloutThresholds
from roadsense.cloud.rollout.plan import canary_size, plan_devices
from roadsense.cloud.rollout.verdict import (
    DeviceFigures,
    MeasuredFigures,
    compare,
    device_figures,
    jensen_shannon,
    level_distribution,
    measured_figures,
    stopped_share,
)
from roadsense.core.config import load_config
from roadsense.core.errors import ConfigError, RequestError

from ..support.helpers import roadsense_cli


def test_jensen_shannon_is_zero_for_the_same_and_one_for_disjoint() -> None:
    p = level_distribution([0.5, 1.0, 3.0, 5.0, 9.9])
    assert p == [0.4, 0.2, 0.2, 0.0, 0.2]
    assert jensen_shannon(p, p) == 0.0
    assert jensen_shannon([1, 0, 0, 0, 0], [0, 0, 0, 0, 1]) == pytest.approx(1.0)
    q = level_distribution([9.0, 9.5, 8.1, 1.0])
    assert jensen_shannon(p, q) == pytest.approx(jensen_shannon(q, p))
    assert 0 < jensen_shannon(p, q) < 1
    assert level_distribution([]) == [0.0] * 5
    assert level_distribution([10.0, -1.0]) == [0.5, 0, 0, 0, 0.5]


def _figures(
    p95: float, rate: float = 60.0, unsure: float = 0.05, shift: float = 0.02
) -> DeviceFigures:
    return DeviceFigures("d", p95, rate, unsure, shift)


def test_compare_names_each_figure_outside_its_threshold() -> None:
    limits = RolloutThresholds()
    control = [_figures(8.0), _figures(10.0)]
    assert compare([_figures(9.0)], control, limits).ok
    slow = compare([_figures(90.0)], control, limits)
    assert slow.failures == ["inference p95 90.0 ms is 10.0x the control's 9.0 ms (limit 1.5x)"]
    quiet = compare([_figures(9.0, rate=30.0)], control, limits)
    assert quiet.failures == ["report rate 30.0/min is 0.50 of the control's 60.0/min (limit 0.8)"]
    unsure = compare([_figures(9.0, unsure=0.5)], control, limits)
    assert unsure.failures == ["uncertain frames 50% against the control's 5% (limit +15%)"]
    shifted = compare([_figures(9.0, shift=0.6)], control, limits)
    assert shifted.failures[0].startswith("level distribution shifted by JSD 0.600")
    # Without a control figure, latency against the canary's own p95 before the rollout.
    alone = compare([_figures(30.0)], [], limits, canary_baseline_p95_ms=10.0)
    assert alone.failures == ["inference p95 30.0 ms is 3.0x the control's 10.0 ms (limit 1.5x)"]
    assert compare([DeviceFigures("d", None, None, None, None)], control, limits).ok


WINDOW = [(4.0, 1.0), (6.0, 2.0), (5.0, 0.0)]
"""(vehicles in view, stopped) of a device's measured reports in the window."""
HISTORY = [(2.0, 0.0), (4.0, 1.0), (6.0, 1.0), (4.0, 2.0)]


def test_measured_figures_against_the_device_own_history() -> None:
    assert stopped_share(WINDOW) == 3 / 15
    assert stopped_share(HISTORY) == 4 / 16
    assert stopped_share([(0.0, 0.0)]) is None  # an empty road has no stopped share
    figures = measured_figures(WINDOW, HISTORY, min_reports=3)
    assert figures == MeasuredFigures(5.0, 4.0, 0.2, 0.25)
    assert figures.vehicle_change == 0.25  # a quarter more vehicles than before
    assert figures.stopped_change == pytest.approx(-0.05)
    # Too few measured reports in the window (or in its history): nothing to compare.
    assert measured_figures(WINDOW, HISTORY, min_reports=4) == MeasuredFigures(
        None, None, None, None
    )
    assert measured_figures(WINDOW, HISTORY[:2], min_reports=3).vehicle_change is None
    empty_before = measured_figures(WINDOW, [(0.0, 0.0)] * 3, min_reports=3)
    assert (empty_before.vehicle_change, empty_before.stopped_change) == (None, None)
    # A detector rollout's device figures carry them; a classifier rollout's do not.
    measured = device_figures(
        "d", health=[], levels=[], history_levels=[], window_s=60.0, min_reports=3,
        measured=WINDOW, history_measured=HISTORY,
    )  # fmt: skip
    assert measured.measured == figures
    assert measured.as_json() == {
        "device_id": "d", "p95_ms": None, "reports_per_min": None, "uncertain_share": None,
        "level_shift": None, "vehicles": 5.0, "vehicles_before": 4.0, "vehicle_change": 0.25,
        "stopped_share": 0.2, "stopped_share_before": 0.25, "stopped_change": -0.05,
    }  # fmt: skip
    classifier = device_figures(
        "d", health=[], levels=[], history_levels=[], window_s=60.0, min_reports=3
    )
    assert classifier.measured is None
    assert set(classifier.as_json()) == {
        "device_id", "p95_ms", "reports_per_min", "uncertain_share", "level_shift"
    }  # fmt: skip


def _measuring(vehicles: float = 5.0, stopped: float = 0.2) -> DeviceFigures:
    """A device whose vehicles and stopped share went from 5.0 and 0.2 to these."""
    return DeviceFigures("d", 9.0, 60.0, 0.05, 0.02, MeasuredFigures(vehicles, 5.0, stopped, 0.2))


def test_compare_holds_a_detector_canary_to_the_control_drift_either_way() -> None:
    limits = RolloutThresholds()
    control = [_measuring(5.5, 0.25), _measuring(5.5, 0.25)]  # +10%, +0.05: the day's drift
    same = compare([_measuring(6.5, 0.3)], control, limits)  # +30%, +0.10
    assert same.ok
    assert (same.canary["vehicle_change"], same.control["vehicle_change"]) == (0.3, 0.1)
    assert (same.canary["stopped_change"], same.control["stopped_change"]) == (0.1, 0.05)
    more = compare([_measuring(8.0)], control, limits)
    assert more.failures == [
        "vehicles in view changed by +60% against their history, the control's by +10% (limit ±25%)"
    ]
    fewer = compare([_measuring(4.0)], control, limits)
    assert fewer.failures == [
        "vehicles in view changed by -20% against their history, the control's by +10% (limit ±25%)"
    ]
    queued = compare([_measuring(5.5, 0.5)], control, limits)
    assert queued.failures == [
        "stopped share changed by +0.30 against its history, the control's by +0.05 (limit ±0.15)"
    ]
    # Without control figures, against no drift; without canary figures, nothing to judge.
    alone = compare([_measuring(5.0, 0.0)], [], limits)
    assert alone.failures == [
        "stopped share changed by -0.20 against its history, the control's by +0.00 (limit ±0.15)"
    ]
    unknown = DeviceFigures("d", 9.0, 60.0, 0.05, 0.02, MeasuredFigures(None, None, None, None))
    assert compare([unknown], control, limits).ok
    # The thresholds are the operator's.
    strict = RolloutThresholds(max_vehicle_shift=0.1, max_stopped_shift=0.01)
    assert len(compare([_measuring(6.5, 0.3)], control, strict).failures) == 2
    # A classifier rollout's verdict has no measured figures at all.
    assert set(compare([_figures(9.0)], [_figures(9.0)], limits).canary) == {
        "p95_ms", "reports_per_min", "uncertain_share", "level_shift"
    }  # fmt: skip


def test_canary_size_and_stages() -> None:
    assert canary_size(50, 10.0, None) == 5
    assert canary_size(3, 10.0, None) == 1
    assert canary_size(6, 33.4, None) == 3
    assert canary_size(6, None, 2) == 2
    for args in ((6, None, 7), (6, 0.0, None), (6, 120.0, None), (6, None, None), (6, 5.0, 2)):
        with pytest.raises(RequestError):
            canary_size(*args)
    current = {"a": "1.0", "b": "1.0", "c": "2.0", "d": "1.0", "e": "1.0", "f": "1.0"}
    planned = plan_devices(
        "r1", "2.0", current=current, online={"e", "f"}, canaries=2,
        stages_percent=[50.0, 100.0], now=5,
    )  # fmt: skip
    stages = {d.device_id: d.stage for d in planned}
    assert stages == {"e": 0, "f": 0, "a": 1, "b": 1, "c": 2, "d": 2}  # online first
    by_id = {d.device_id: d for d in planned}
    assert (by_id["c"].state, by_id["c"].want_version) == ("applied", "2.0")  # already there
    assert {by_id[d].state for d in "abdef"} == {"waiting"}


def test_canary_option() -> None:
    assert parse_canary("10%") == (10.0, 0)
    assert parse_canary("2.5%") == (2.5, 0)
    assert parse_canary("3") == (0.0, 3)
    for bad in ("0%", "101%", "0", "1.5", "ten", "-2", ""):
        with pytest.raises(RequestError, match="--canary"):
            parse_canary(bad)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("stages_percent = [50, 20]", "stages_percent [50.0, 20.0]: give ascending percents"),
        ("stages_percent = [50]", "the last stage must be 100"),
        ("window_s = 0", "rollout.window_s"),
        ("cert_file = 'x.pem'", "give both cert_file and key_file"),
        ("thresholds = { max_latency_ratio = 0.5 }", "rollout.thresholds.max_latency_ratio"),
        ("thresholds = { max_stopped_shift = 2 }", "rollout.thresholds.max_stopped_shift"),
        ("thresholds = { max_vehicle_shift = -1 }", "rollout.thresholds.max_vehicle_shift"),
        ("tresholds = { }", "rollout.tresholds: unknown key"),
    ],
)
def test_bad_rollout_config_is_one_clear_line(tmp_path: Path, section: str, message: str) -> None:
    path = tmp_path / "cloud.toml"
    path.write_text(f"[rollout]\n{section}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="rollout") as caught:
        load_config(CloudConfig, path)
    assert message in str(caught.value)
    run = roadsense_cli("cloud", "serve", "--config", str(path))
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert message in run.stderr


def test_rollout_cli_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    for args, message in (
        (["start", "--model", "2.0", "--canary", "0%"], "a percent must be more than 0"),
        (["start", "--model", "2.0", "--canary", "1", "--devices", "a", "--site", "s"],
         "give --devices or --site, not both"),
        (["status", "--cert-file", "c.pem"], "give both --cert-file and --key-file"),
        (["status", "--token-file", str(tmp_path / "none")], "--token-file"),
        (["pause", "--address", "127.0.0.1:1"], "PauseRollout at 127.0.0.1:1: UNAVAILABLE"),
    ):  # fmt: skip
        run = roadsense_cli("fleet", "rollout", *args)
        assert run.returncode == 1, args
        assert "Traceback" not in run.stderr
        assert message in run.stderr, run.stderr


def test_only_the_process_holding_the_rollout_lock_ticks(tmp_path: Path) -> None:
    from roadsense.cloud.config import StoreConfig
    from roadsense.cloud.leader import FileLeaderLock
    from roadsense.cloud.rollout.config import RolloutConfig
    from roadsense.cloud.rollout.controller import RolloutController
    from roadsense.cloud.store.open import open_store
    from roadsense.core.publisher import MemoryPublisher

    store = open_store(StoreConfig(path=tmp_path / "city.db"))
    lock_path = tmp_path / "city.db.rollout-lock"
    config = RolloutConfig(tick_s=0.05)
    controllers = [
        RolloutController(store, config, MemoryPublisher(), dict, leader=FileLeaderLock(lock_path))
        for _ in range(2)
    ]
    ticks = [0, 0]
    for number, controller in enumerate(controllers):

        def count(n: int = number) -> None:
            ticks[n] += 1

        controller.tick = count  # type: ignore[method-assign]
    try:
        controllers[0].start()
        deadline = time.monotonic() + 10
        while ticks[0] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        controllers[1].start()
        time.sleep(0.5)
        assert ticks[0] >= 3
        assert ticks[1] == 0
        assert (controllers[0].leading, controllers[1].leading) == (True, False)
        controllers[0].stop()  # the leader goes: the other takes over
        while ticks[1] < 3 and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        assert ticks[1] >= 3
        assert controllers[1].leading
    finally:
        for controller in controllers:
            controller.stop()
        store.close()
