"""The forecaster in the cloud, end to end on a real gRPC server and SQLite store:
replay → IngestObservations → forecast job → GetForecast, online scoring, hot reload,
and the export that closes the loop."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import grpc
import numpy as np
import pytest

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig, ForecastConfig
from roadsense.cloud.tools.export import export_series
from roadsense.cloud.tools.replay import ReplayTarget, replay
from roadsense.core.timeutil import now_ms
from roadsense.models.card import card_path_for
from roadsense.models.forecast.runtime import OnnxForecaster
from roadsense.models.forecast.series import Series, load_series
from roadsense.models.shipped import DEFAULT_FORECASTER, SZ_SPEEDS, SZ_WEATHER
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

from ..support.helpers import roadsense_cli

pytestmark = pytest.mark.integration

INTERVAL_MS = 15 * 60_000
FIRST, ORIGIN = 100, 107  # replayed rows; the forecast origin is the last one


@pytest.fixture(scope="module")
def sz() -> Series:
    return load_series(SZ_SPEEDS, weather_path=SZ_WEATHER)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """The shipped forecaster and its card, copied where a test may replace them."""
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(DEFAULT_FORECASTER, folder / "forecaster.onnx")
    shutil.copy(card_path_for(DEFAULT_FORECASTER), folder / "forecaster.card.json")
    return folder / "forecaster.onnx"


def _start(config: CloudConfig) -> CloudService:
    service = CloudService(config)
    service.start()
    return service


@pytest.fixture
def forecasting(cloud_config: CloudConfig, model_copy: Path) -> Iterator[CloudService]:
    # The background job polls rarely: each test runs the job itself, deterministically.
    config = cloud_config.model_copy(
        update={"forecast": ForecastConfig(model=model_copy, poll_s=3600, stale_after_s=3600)}
    )
    service = _start(config)
    yield service
    service.stop()


def _stub(service: CloudService) -> city_pb2_grpc.CityServiceStub:
    return city_pb2_grpc.CityServiceStub(grpc.insecure_channel(service.address))


def _time_ms(series: Series, row: int) -> int:
    return round(series.times[row].timestamp() * 1000)


def test_a_replayed_feed_is_forecast_in_one_batch_and_served(
    forecasting: CloudService, sz: Series
) -> None:
    summary = replay(
        sz, ReplayTarget(forecasting.address), speedup=0, rows=range(FIRST, ORIGIN + 1)
    )
    assert summary.accepted == int(sz.observed[FIRST : ORIGIN + 1].sum())
    assert summary.weather_accepted == ORIGIN + 1 - FIRST
    assert forecasting.forecasts is not None
    assert forecasting.forecasts.run_once() == 40

    response = _stub(forecasting).GetForecast(city_pb2.GetForecastRequest(), timeout=10)
    model = OnnxForecaster(DEFAULT_FORECASTER)
    assert response.model_version == model.version
    assert response.interval_ms == INTERVAL_MS
    window = slice(ORIGIN - 3, ORIGIN + 1)
    assert sz.weather is not None
    expected = model.predict(
        sz.values[window], sz.observed[window], sz.times[window], sz.weather[window]
    )
    by_segment = {f.segment_id: f for f in response.forecasts}
    assert sorted(by_segment) == sorted(sz.segment_ids)
    for column, segment in enumerate(sz.segment_ids):
        forecast = by_segment[segment]
        assert forecast.origin_ms == _time_ms(sz, ORIGIN)
        assert forecast.model_version == model.version
        assert forecast.stale, "inputs from January 2015 are stale"
        assert forecast.missing_fraction == pytest.approx(1 - sz.observed[window, column].mean())
        observed_rows = [r for r in range(ORIGIN - 3, ORIGIN + 1) if sz.observed[r, column]]
        assert forecast.newest_input_ms == (_time_ms(sz, observed_rows[-1]) if observed_rows else 0)
        assert [p.horizon for p in forecast.points] == [1, 2, 3, 4]
        assert [p.target_ms for p in forecast.points] == [
            forecast.origin_ms + h * INTERVAL_MS for h in (1, 2, 3, 4)
        ]
        np.testing.assert_allclose(
            [p.value for p in forecast.points], expected.values[column], atol=1e-3
        )


def test_get_forecast_filters_and_explains_what_it_cannot_answer(
    forecasting: CloudService, sz: Series
) -> None:
    stub = _stub(forecasting)
    replay(sz, ReplayTarget(forecasting.address), speedup=0, rows=range(FIRST, ORIGIN + 1))
    assert forecasting.forecasts is not None
    forecasting.forecasts.run_once()
    segment = sz.segment_ids[0]
    response = stub.GetForecast(
        city_pb2.GetForecastRequest(segment_ids=[segment, "not-a-road"], horizons=[2]),
        timeout=10,
    )
    (forecast,) = response.forecasts
    assert forecast.segment_id == segment
    assert [(p.horizon, p.target_ms) for p in forecast.points] == [
        (2, _time_ms(sz, ORIGIN) + 2 * INTERVAL_MS)
    ]
    assert "was not trained on this segment" in response.unavailable["not-a-road"]
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetForecast(city_pb2.GetForecastRequest(horizons=[9]), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1..4 steps of 15 min" in str(refused.value.details())


def test_fresh_inputs_are_not_stale_and_gaps_are_counted(forecasting: CloudService) -> None:
    """Live feed: the wall clock's current interval is still filling, so the origin is the
    interval before it; a segment missing one of four intervals is 25 % missing."""
    model = OnnxForecaster(DEFAULT_FORECASTER)
    now = now_ms()
    origin = (now // INTERVAL_MS - 1) * INTERVAL_MS
    observations = [
        city_pb2.Observation(
            segment_id=segment, time_ms=t + 60_000, value=30.0, unit="km/h", source="loop"
        )
        for t in (origin - 3 * INTERVAL_MS, origin - 2 * INTERVAL_MS, origin - INTERVAL_MS, origin)
        for segment in model.card.segment_ids[:2]
        if not (segment == model.card.segment_ids[1] and t == origin - INTERVAL_MS)
    ]
    # An observation in the current interval does not move the origin.
    observations.append(
        city_pb2.Observation(
            segment_id=model.card.segment_ids[0],
            time_ms=min(now, origin + INTERVAL_MS + 1),
            value=31.0,
            unit="km/h",
            source="loop",
        )
    )
    stub = _stub(forecasting)
    stub.IngestObservations(
        city_pb2.IngestObservationsRequest(observations=observations), timeout=10
    )
    assert forecasting.forecasts is not None
    forecasting.forecasts.run_once()
    response = stub.GetForecast(
        city_pb2.GetForecastRequest(segment_ids=list(model.card.segment_ids[:3])), timeout=10
    )
    full, gap, silent = response.forecasts
    assert full.origin_ms == origin
    assert not full.stale
    assert full.missing_fraction == 0.0
    assert full.newest_input_ms == origin + 60_000
    assert not gap.stale
    assert gap.missing_fraction == 0.25
    assert silent.stale
    assert silent.missing_fraction == 1.0
    assert silent.newest_input_ms == 0


def test_forecasts_are_scored_against_the_observations_that_arrive(
    forecasting: CloudService, sz: Series
) -> None:
    target = ReplayTarget(forecasting.address)
    job = forecasting.forecasts
    assert job is not None
    replay(sz, target, speedup=0, rows=range(FIRST, ORIGIN + 1))
    job.run_once()
    stub = _stub(forecasting)
    first = {f.segment_id: f for f in stub.GetForecast(city_pb2.GetForecastRequest()).forecasts}
    replay(sz, target, speedup=0, rows=range(ORIGIN + 1, ORIGIN + 3))
    job.run_once()

    response = stub.GetForecast(city_pb2.GetForecastRequest(horizons=[1, 2]), timeout=10)
    online = {s.horizon: s for s in response.online}
    for horizon in (1, 2):
        row = ORIGIN + horizon
        errors = [
            abs(first[segment].points[horizon - 1].value - sz.values[row, column])
            for column, segment in enumerate(sz.segment_ids)
            if sz.observed[row, column]
        ]
        # Only the run at ORIGIN made forecasts whose targets are complete now.
        assert online[horizon].scored == len(errors)
        assert online[horizon].mae == pytest.approx(float(np.mean(errors)), abs=1e-3)
    gauge = forecasting.metrics.registry.get_sample_value(
        "roadsense_cloud_forecast_online_mae", {"horizon": "2"}
    )
    assert gauge == pytest.approx(online[2].mae)


def test_a_new_model_is_picked_up_without_a_restart(
    forecasting: CloudService, sz: Series, model_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = forecasting.forecasts
    assert job is not None
    replay(sz, ReplayTarget(forecasting.address), speedup=0, rows=range(FIRST, ORIGIN + 1))
    job.run_once()
    stub = _stub(forecasting)
    old = stub.GetForecast(city_pb2.GetForecastRequest()).model_version

    card_path = card_path_for(model_copy)
    card = json.loads(card_path.read_text())
    card["version"] = "retrained-by-the-city"
    card_path.write_text(json.dumps(card))
    job.run_once()
    response = stub.GetForecast(city_pb2.GetForecastRequest(), timeout=10)
    assert response.model_version == "retrained-by-the-city" != old
    assert {f.model_version for f in response.forecasts} == {"retrained-by-the-city"}

    # A half-copied model (ONNX replaced, card not yet) is refused; the old one serves on.
    model_copy.write_bytes(b"not an onnx file")
    later = os.stat(model_copy).st_mtime_ns + 1_000_000_000
    os.utime(model_copy, ns=(later, later))
    job.run_once()
    assert "does not match its card" in caplog.text
    assert "still serving version retrained-by-the-city" in caplog.text
    caplog.clear()
    assert stub.GetForecast(city_pb2.GetForecastRequest()).model_version == (
        "retrained-by-the-city"
    )
    assert job.stats.load_failures == 1


def test_get_forecast_when_forecasting_is_off(cloud_config: CloudConfig) -> None:
    service = _start(cloud_config.model_copy(update={"forecast": ForecastConfig(enabled=False)}))
    try:
        with pytest.raises(grpc.RpcError) as refused:
            _stub(service).GetForecast(city_pb2.GetForecastRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "enabled = false" in str(refused.value.details())
    finally:
        service.stop()


def test_export_writes_what_was_fed_in_the_training_format(
    forecasting: CloudService, sz: Series, tmp_path: Path
) -> None:
    rows = range(0, 30)
    replay(sz, ReplayTarget(forecasting.address), speedup=0, rows=rows)
    summary = export_series(forecasting.config.store.path, tmp_path / "out", INTERVAL_MS)
    assert summary.weather is not None
    exported = load_series(summary.speeds, weather_path=summary.weather)
    assert exported.times == sz.times[: len(rows)]
    assert exported.weather is not None
    assert sz.weather is not None
    np.testing.assert_array_equal(exported.weather, sz.weather[: len(rows)])
    for column, segment in enumerate(exported.segment_ids):
        original = sz.segment_ids.index(segment)
        np.testing.assert_array_equal(exported.values[:, column], sz.values[: len(rows), original])
    never_observed = {s for i, s in enumerate(sz.segment_ids) if not sz.observed[rows, i].any()}
    assert set(exported.segment_ids) == set(sz.segment_ids) - never_observed


def test_replay_and_export_commands(forecasting: CloudService, tmp_path: Path) -> None:
    speeds = tmp_path / "feed.csv"
    start = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)
    speeds.write_text("a-road,b-road\n31.5,0\n30.0,12.25\n")
    result = roadsense_cli(
        "forecast", "replay", "--speeds", str(speeds), "--start", start.isoformat(),
        "--interval-min", "15", "--target", forecasting.address, "--speedup", "0", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["accepted"] == 3
    assert figures["rows"] == 2
    assert figures["rejected"] == 0
    again = roadsense_cli(
        "forecast", "replay", "--speeds", str(speeds), "--start", start.isoformat(),
        "--interval-min", "15", "--target", forecasting.address, "--speedup", "0", "--json",
    )  # fmt: skip
    assert json.loads(again.stdout.strip().splitlines()[-1])["duplicates"] == 3

    exported = roadsense_cli(
        "forecast", "export", "--db", str(forecasting.config.store.path),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "out" / "speeds.csv").read_text().splitlines() == [
        "date,a-road,b-road",
        "2026-03-02 07:00:00,31.5,0.0",
        "2026-03-02 07:15:00,30.0,12.25",
    ]
    missing = roadsense_cli(
        "forecast", "export", "--db", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path)
    )
    assert missing.returncode == 1
    assert "no such cloud store" in missing.stderr
    assert "Traceback" not in missing.stderr
