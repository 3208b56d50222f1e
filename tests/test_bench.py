"""The edge benchmark runs end to end and its figures are consistent (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from roadsense.bench.classifier import run_classifier_bench
from roadsense.bench.delivery import run_delivery_bench
from roadsense.bench.detector import run_detector_bench
from roadsense.bench.edge import run_edge_bench
from roadsense.bench.edge_rtsp import largest_passing, run_rtsp_bench
from roadsense.bench.forecast import run_forecast_bench
from roadsense.bench.grpc import run_grpc_bench
from roadsense.bench.ingest import run_ingest_bench
from roadsense.bench.ingest_workers import _Reader, run_worker_bench
from roadsense.bench.rollout import run_rollout_bench
from roadsense.cloud.config import StoreConfig
from roadsense.cloud.store.open import open_store
from roadsense.harness.postgres import RunningPostgres
from roadsense.models.shipped import PLACEHOLDER_CNN

from .support.helpers import roadsense_cli

pytestmark = pytest.mark.integration


def test_edge_bench_reports_every_figure() -> None:
    result = run_edge_bench(
        PLACEHOLDER_CNN, batch=8, min_model_s=0.2, max_cameras=2, trial_s=1.0, repeats=1
    )
    assert result["frames"] == 1699  # every decodable frame of the clip went through
    assert result["runs"] == 1
    assert len(result["pipeline_fps_runs"]) == 1
    assert result["publisher"] == "mosquitto"
    assert result["model_only_fps"] > 0
    assert result["pipeline_fps"] > 0
    assert result["ratio"] == pytest.approx(
        result["pipeline_fps"] / result["model_only_fps"], abs=0.002
    )
    trials = result["camera_trials"]
    assert [t["cameras"] for t in trials][:1] == [1]
    assert result["cameras_at_2hz"] in (0, 1, 2)
    assert result["model_placeholder"] is True


@pytest.mark.parametrize("measure", [False, True], ids=["classifying", "measuring"])
def test_rtsp_edge_bench_compares_keyframes_with_decode_all(measure: bool) -> None:
    result = run_rtsp_bench(
        PLACEHOLDER_CNN, max_cameras=1, trial_s=1.0, clip_seconds=8, measure=measure
    )
    assert result["model"].startswith("detector " if measure else "classifier ")
    trials = result["trials"]
    assert [(t["mode"], t["cameras"]) for t in trials] == [("auto", 1), ("never", 1)]
    assert trials[0]["decode_modes"] == ["keyframes"]
    assert trials[1]["decode_modes"] == ["all"]
    assert result["cameras_keyframes"] == int(trials[0]["sustained"])
    assert result["cameras_decode_all"] == int(trials[1]["sustained"])
    for trial in trials:
        assert trial["cpu_per_camera"] > 0
        assert trial["min_stream_fps"] > 0


@pytest.mark.parametrize(
    ("limit", "maximum", "expected"), [(0, 64, 0), (5, 64, 5), (64, 64, 64), (9, 10, 9)]
)
def test_largest_passing_finds_the_boundary(limit: int, maximum: int, expected: int) -> None:
    tried: list[int] = []

    def attempt(n: int) -> bool:
        tried.append(n)
        return n <= limit

    assert largest_passing(attempt, maximum) == expected
    assert len(tried) <= 10
    assert max(tried) <= maximum


def test_ingest_bench_reports_every_figure() -> None:
    result = run_ingest_bench(devices=50, messages=500, rate=500.0, seconds=1.0, repeats=1)
    assert result["raw_subscriber_msgs_per_s"] > 0
    assert result["ingest_msgs_per_s"] > 0
    # Both rates are rounded: a near-zero baseline under load makes the recomputed ratio
    # differ from the exact one by more than its own rounding.
    assert result["ratio"] == pytest.approx(
        result["ingest_msgs_per_s"] / result["raw_subscriber_msgs_per_s"], rel=0.01, abs=0.002
    )
    assert result["latency_reports"] == 500  # every report of the fixed-rate run was timed
    assert 0 <= result["p50_capture_to_queryable_ms"] <= result["p99_capture_to_queryable_ms"]


def test_ingest_bench_runs_on_its_own_postgresql() -> None:
    result = run_ingest_bench(
        devices=20, messages=2000, rate=300.0, seconds=1.0, repeats=1, store="postgresql"
    )
    assert (result["store"], result["latency_reports"]) == ("postgresql", 300)
    assert result["ingest_msgs_per_s"] > 0
    assert result["cloud_cpu_us_per_msg"] > 0
    # The server did the storing (2,000 reports: enough for its 10 ms CPU clock ticks).
    assert result["postgres_cpu_us_per_msg"] > 0


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_worker_bench_splits_the_reports_over_worker_processes(store: str) -> None:
    result = run_worker_bench(
        workers=[1, 2], store=store, devices=20, messages=600, rate=200.0, seconds=1.0
    )
    assert [c["workers"] for c in result["configurations"]] == [1, 2]
    for figures in result["configurations"]:
        assert sum(figures["stored_by_worker"]) == 600  # each report stored by one worker
        assert len(figures["cpu_us_per_msg_by_worker"]) == figures["workers"]
        assert figures["cpu_us_per_msg"] > 0
        assert figures["latency_reports"] == 200  # every report of the fixed-rate run seen
        assert 0 <= figures["p50_capture_to_queryable_ms"] <= figures["p99_capture_to_queryable_ms"]
        assert figures["ratio"] == pytest.approx(
            figures["ingest_msgs_per_s"] / result["raw_subscriber_msgs_per_s"], rel=0.01, abs=0.002
        )
        assert (figures["postgres_cpu_us_per_msg"] is None) == (store == "sqlite")


def test_the_latency_reader_sees_each_report_once_when_commits_come_out_of_order(
    postgres: RunningPostgres,
) -> None:
    url = postgres.create_database()
    open_store(StoreConfig(url=url)).close()  # the schema
    insert = (
        "INSERT INTO reports (device_id, seq, camera_id, segment_id, capture_time_ms, "
        "window_start_ms, received_ms, model_version, labels, probabilities, "
        "frames_in_window, level) VALUES ('d', %s, 'c', 's', %s, 0, 0, 'm', '[]', '[]', 1, 0)"
    )
    reader = _Reader(url, None)
    with psycopg.connect(url) as slow, psycopg.connect(url, autocommit=True) as fast:
        slow.execute(insert, [1, 1001])  # takes id 1, commits last
        fast.execute(insert, [2, 1002])
        fast.execute(insert, [3, 1003])
        assert reader.new_captures() == [1002, 1003]
        assert reader.new_captures() == []
        slow.commit()
        assert reader.new_captures() == [1001]
        fast.execute(insert, [4, 1004])
        assert reader.new_captures() == [1004]
        assert reader.new_captures() == []


def test_worker_counts_are_checked_before_anything_starts() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "roadsense.cli", "bench", "ingest", "--workers", "1,zero"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "expected worker counts from 1 to 64" in done.stderr
    assert "Traceback" not in done.stderr


def test_delivery_bench_delivers_every_report_in_both_modes() -> None:
    result = run_delivery_bench(rate=50.0, seconds=1.0)
    for mode in ("broker", "cloud"):
        figures = result[mode]
        assert figures["reports"] == 50
        assert figures["left_in_outbox"] == 0
        assert figures["max_depth"] >= figures["mean_depth"] >= 0
    assert result["cloud"]["cloud_acks"] >= 1
    assert set(result) == {"rate_per_s", "seconds", "broker", "cloud", "latency_ratio"}


def test_grpc_bench_reports_every_figure() -> None:
    result = run_grpc_bench(segments=200, calls=20, watchers=5, clients=4, seconds=0.4)
    assert result["fanout_samples"] == 5 * 10  # every watcher saw every change
    assert 0 < result["get_city_state_p50_ms"] <= result["get_city_state_p99_ms"]
    assert result["get_city_state_after_change_p50_ms"] > 0
    assert (
        result["get_city_state_after_change_p50_ms"] <= result["get_city_state_after_change_p99_ms"]
    )
    assert 0 <= result["fanout_p50_ms"] <= result["fanout_p99_ms"]
    assert result["get_city_state_ratio"] > 0
    assert result["answer_bytes"] > 200 * 40  # every segment is in the answer
    for rate in ("get_city_state", "get_city_state_deflated", "bare_unary", "same_size_unary"):
        assert result[f"{rate}_rate_per_s"] > 0
    assert 0 < result["deflated_answer_bytes"] < result["answer_bytes"]
    deflated = result["get_city_state_deflated_rate_per_s"] / result["bare_unary_rate_per_s"]
    assert result["deflated_rate_over_bare_unary"] == pytest.approx(deflated, abs=0.01)
    ratio = result["get_city_state_rate_per_s"] / result["bare_unary_rate_per_s"]
    assert result["rate_over_bare_unary"] == pytest.approx(ratio, abs=0.01)
    ceiling = result["same_size_unary_rate_per_s"] / result["bare_unary_rate_per_s"]
    assert result["same_size_over_bare_unary"] == pytest.approx(ceiling, abs=0.01)


def test_forecast_bench_reports_every_figure() -> None:
    result = run_forecast_bench(segments=300, repeats=3)
    assert result["segments"] == 300
    assert result["onnxruntime_ms"] > 0
    assert result["torch_eager_ms"] > 0
    ratio = result["torch_eager_ms"] / result["onnxruntime_ms"]
    assert result["torch_over_onnxruntime"] == pytest.approx(ratio, abs=0.05)


def test_classifier_bench_reports_every_batch() -> None:
    result = run_classifier_bench(width=64, height=64, min_s=0.05)
    for batch in (1, 4, 8):
        onnx, eager = result[f"onnxruntime_img_s_b{batch}"], result[f"torch_eager_img_s_b{batch}"]
        assert onnx > 0
        assert eager > 0
        assert result[f"ratio_b{batch}"] == pytest.approx(onnx / eager, rel=0.05)


def test_detector_bench_runs_the_detector_at_each_size_beside_the_classifier() -> None:
    result = run_detector_bench(sizes=[(320, 320), (512, 416)], min_s=0.1, rounds=2)
    assert (result["input"], result["detector"]) == ("512", "1.1.0-yolox-nano-coco-512")
    assert result["rounds"] == 2
    for suffix in ("", "_320", "_512x416"):
        for batch in (1, 8):
            assert result[f"detector{suffix}_img_s_b{batch}"] > 0
    for batch in (1, 8):
        ratio = result[f"detector_img_s_b{batch}"] / result[f"classifier_img_s_b{batch}"]
        assert result[f"ratio_b{batch}"] == pytest.approx(ratio, rel=0.05)


@pytest.mark.parametrize("sizes", ["512x", "500", "0", "640x-32", "big"])
def test_detector_bench_refuses_a_bad_size_in_one_line(sizes: str) -> None:
    done = roadsense_cli("bench", "detector", "--sizes", f"416,{sizes}")
    assert done.returncode == 2
    assert f"input size {sizes!r}" in done.stderr
    assert "Traceback" not in done.stderr


def test_gpu_check_script_runs_and_says_what_it_skipped() -> None:
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        ["bash", str(repo / "bench" / "gpu_check.sh"), "--seconds", "0.1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(figures["ort_cpu_img_s"]) == {"b1", "b8", "b32"}
    if "CUDAExecutionProvider" not in figures["providers"]:
        assert figures["ort_cuda"].startswith("skipped:")
    assert isinstance(figures["tensorrt"], dict) or figures["tensorrt"].startswith("skipped:")
    detector = figures["detector"]
    assert detector["reference_boxes"] > 0
    assert set(detector["ort_cpu_img_s"]) == {"b1", "b8"}
    assert isinstance(detector["tensorrt"], dict) or detector["tensorrt"].startswith("skipped:")


def test_rollout_bench_reports_every_figure() -> None:
    # The canary verdict compares report rates counted in the window: at 5 reports a
    # second, 0.5 s held 2-3 reports, so one report late on a loaded box read as a 25 %
    # drop and failed the canary (limit 0.8). 2 s hold 10, one late report is 10 %.
    result = run_rollout_bench(devices=4, model_mb=0.3, canary_percent=25, window_s=2.0)
    assert (result["devices"], result["canary_devices"], result["swaps"]) == (4, 1, 4)
    assert result["transitions"] == ["canary", "canary", "promoting", "done"]
    # Each device fetched the release exactly once, whole; nothing was lost in the swap.
    assert result["bytes_per_device_mean"] == result["bytes_per_device_max"] == 300_000
    assert result["bytes_ratio"] == 1.0
    assert result["reports_lost"] == 0
    assert result["reports_created"] > 0
    assert result["time_to_all_s"] > result["window_s"]
    assert result["beyond_window_s"] == pytest.approx(
        result["time_to_all_s"] - result["window_s"], abs=0.02
    )


def test_the_measuring_edge_bench_counts_cameras_and_compares_with_the_detector_alone() -> None:
    from roadsense.bench.edge import run_edge_bench
    from roadsense.models.shipped import DEFAULT_CNN

    figures = run_edge_bench(DEFAULT_CNN, max_cameras=2, trial_s=2.0, min_model_s=0.3, measure=True)
    assert figures["detector_only_fps"] > 0
    assert figures["cameras_at_1hz"] >= 1
    trials = figures["camera_trials"]
    assert [t["cameras"] for t in trials][:1] == [1]
    assert figures["pipeline_measured_fps"] == figures["cameras_at_1hz"]  # sampled at 1 Hz
    assert figures["ratio"] == pytest.approx(
        figures["pipeline_measured_fps"] / figures["detector_only_fps"], abs=0.05
    )


def test_the_camera_search_tries_its_ceiling_and_bisects_below_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from roadsense.bench import edge

    def sustained(cameras: int, *_: object, **__: object) -> tuple[bool, dict[str, float]]:
        return cameras <= 40, {"mean_sample_hz": 1.0}

    monkeypatch.setattr(edge, "_cameras_sustained", sustained)
    cameras, trials = edge.cameras_at_2hz(None, tmp_path, 48, 1.0)  # type: ignore[arg-type]
    # Doubling stops at the ceiling, 48 (not at 32, the last power of two under it).
    assert [t["cameras"] for t in trials][:7] == [1, 2, 4, 8, 16, 32, 48]
    assert cameras == 40
    # A ceiling every trial sustains is the answer itself.
    cameras, trials = edge.cameras_at_2hz(None, tmp_path, 24, 1.0)  # type: ignore[arg-type]
    assert (cameras, trials[-1]["cameras"]) == (24, 24)
