"""Feeds, forecasts, enrollment and the registry in the city store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.domain import HorizonScore, RegistryEntry, SegmentForecast, TokenUse
from roadsense.cloud.forecast.feeds import ObservationRecord, WeatherRecord
from roadsense.cloud.ingest.decode import decode_message
from roadsense.core.timeutil import now_ms

from ..support.factories import report, status
from ..support.stores import StoreTarget

MINUTE = 60_000


def _forecast(origin: int, values: tuple[float, ...], made: int) -> SegmentForecast:
    return SegmentForecast(
        segment_id="seg-1",
        origin_ms=origin,
        interval_ms=MINUTE,
        values=values,
        observed_probability=(0.9, 0.8),
        model_version="gru-1",
        newest_input_ms=origin,
        missing_fraction=0.25,
        made_ms=made,
    )


def test_feeds_are_stored_once_and_read_by_time(store_target: StoreTarget) -> None:
    store = store_target.open()
    speeds = [
        ObservationRecord("seg-2", 2 * MINUTE, 30.0, "km/h", "loop"),
        ObservationRecord("seg-1", MINUTE, 50.0, "km/h", "loop"),
        ObservationRecord("seg-1", MINUTE, 45.0, "km/h", "probe"),
    ]
    assert store.add_observations(speeds, received_ms=7) == 3
    again = [speeds[0], ObservationRecord("seg-1", 3 * MINUTE, 20.0, "km/h", "loop")]
    assert store.add_observations(again, received_ms=8) == 1
    assert store.add_weather([WeatherRecord(MINUTE, "rain", "met")], received_ms=7) == 1
    assert store.add_weather([WeatherRecord(MINUTE, "snow", "met")], received_ms=8) == 0
    assert store.observations("seg-1", 0, 10 * MINUTE) == [
        ObservationRecord("seg-1", MINUTE, 50.0, "km/h", "loop"),
        ObservationRecord("seg-1", MINUTE, 45.0, "km/h", "probe"),
        ObservationRecord("seg-1", 3 * MINUTE, 20.0, "km/h", "loop"),
    ]
    assert sorted(store.observations_between(MINUTE, 3 * MINUTE)) == [
        ("seg-1", MINUTE, 45.0),
        ("seg-1", MINUTE, 50.0),
        ("seg-2", 2 * MINUTE, 30.0),
    ]
    assert store.newest_observation_ms() == 3 * MINUTE
    assert store.weather_between(0, 2 * MINUTE) == [(MINUTE, "rain")]
    store.close()
    assert store_target.rows(
        "SELECT segment_id, time_ms, source, received_ms FROM observations "
        "ORDER BY segment_id, time_ms, source"
    ) == [
        ("seg-1", MINUTE, "loop", 7),
        ("seg-1", MINUTE, "probe", 7),
        ("seg-1", 3 * MINUTE, "loop", 8),
        ("seg-2", 2 * MINUTE, "loop", 7),
    ]


def test_forecasts_replace_score_and_prune(store_target: StoreTarget) -> None:
    store = store_target.open()
    assert store.newest_observation_ms() is None
    store.save_forecasts([_forecast(0, (10.0, 20.0), made=1)])
    # The same origin again replaces it (and its scoring), a newer origin is the latest.
    store.save_forecasts([_forecast(0, (12.0, 22.0), made=2)])
    store.add_observations(
        [
            ObservationRecord("seg-1", MINUTE + 1, 16.0, "km/h", "loop"),
            ObservationRecord("seg-1", MINUTE + 2, 18.0, "km/h", "loop"),
        ],
        received_ms=3,
    )
    # Horizon 1 targets [1, 2) min: complete; horizon 2 targets [2, 3) min: not yet.
    assert store.score_forecasts(complete_before_ms=2 * MINUTE) == 1
    assert store.forecast_scores("gru-1") == [HorizonScore(1, 5.0, 1)]
    assert store.forecast_scores("other") == []
    store.save_forecasts([_forecast(MINUTE, (30.0, 40.0), made=4)])
    (latest,) = store.latest_forecasts()
    assert (latest.origin_ms, latest.values, latest.made_ms) == (MINUTE, (30.0, 40.0), 4)
    assert latest == _forecast(MINUTE, (30.0, 40.0), made=4)
    assert store.prune_forecasts(before_ms=MINUTE) == 2
    store.close()
    assert store_target.rows(
        "SELECT origin_ms, horizon, value, scored, actual FROM forecasts ORDER BY horizon"
    ) == [(MINUTE, 1, 30.0, 0, None), (MINUTE, 2, 40.0, 0, None)]


def test_tokens_are_spent_once_and_revocation_keeps_its_first_time(
    store_target: StoreTarget,
) -> None:
    store = store_target.open()
    store.add_enrollment_token("a" * 64, "dev-1", expires_ms=1_000, uses=2, now=10)
    store.add_enrollment_token("b" * 64, None, expires_ms=50, uses=5, now=10)
    results = []

    def spend() -> None:
        results.append(store.use_enrollment_token("a" * 64, now=100))

    racers = [threading.Thread(target=spend) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(r.outcome for r in results) == ["ok", "ok", "used_up", "used_up"]
    assert store.use_enrollment_token("b" * 64, now=100) == TokenUse("expired", None)
    assert store.use_enrollment_token("c" * 64, now=100) == TokenUse("unknown")

    store.record_enrollment("dev-1", "serial-1", now=200)
    assert store.revoke_device("ghost", "lost", now=300) is None
    assert store.revoke_device("ghost", "lost", now=300, known_elsewhere=True) == RegistryEntry(
        "ghost", 0, 300, "", "lost"
    )
    assert store.revoke_device("dev-1", "stolen", now=400) == RegistryEntry(
        "dev-1", 200, 400, "serial-1", "stolen"
    )
    assert store.revoke_device("dev-1", "again", now=500) == RegistryEntry(
        "dev-1", 200, 400, "serial-1", "stolen"
    )
    assert store.revoked_devices() == frozenset({"dev-1", "ghost"})
    assert sorted(store.registry()) == ["dev-1", "ghost"]
    store.close()
    assert store_target.rows(
        "SELECT token_sha256, device_id, uses_left FROM enrollment_tokens ORDER BY token_sha256"
    ) == [("a" * 64, "dev-1", 0), ("b" * 64, None, 5)]


def test_a_telemetry_only_device_can_be_revoked_and_counted(store_target: StoreTarget) -> None:
    store = store_target.open()
    tracker = CityTracker(60_000)
    t = now_ms()
    birth = decode_message(
        "roadsense/v1/dev-2/status", status("dev-2").SerializeToString(), t, 30_000
    )
    reading = decode_message(
        "roadsense/v1/dev-3/cam1/congestion", report(device="dev-3").SerializeToString(), t, 30_000
    )
    store.write_batch([birth, reading], tracker.apply)
    assert store.device_counts() == (2, 0)
    will = status("dev-2", online=False).SerializeToString()
    store.write_batch([decode_message("roadsense/v1/dev-2/status", will, t, 30_000)], tracker.apply)
    assert store.device_counts() == (1, 1)
    assert store.revoke_device("dev-3", "decommissioned", now=t) == RegistryEntry(
        "dev-3", 0, t, "", "decommissioned"
    )
    store.close()
