"""The forecast wing's rows: observations, weather and forecasts, as both stores keep them.

``ForecastStore`` is what the forecast job and the feeds need of a store; ``ForecastRows``
implements it on any engine's sessions (``roadsense.cloud.store.session``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from roadsense.cloud.domain import HorizonScore, SegmentForecast
from roadsense.cloud.forecast.feeds import ObservationRecord, WeatherRecord
from roadsense.cloud.store.session import Row, Sessions

SAVE_FORECASTS = """INSERT INTO forecasts (segment_id, origin_ms, horizon, interval_ms,
    target_ms, value, observed_probability, model_version, newest_input_ms,
    missing_fraction, made_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
   ON CONFLICT (segment_id, origin_ms, horizon) DO UPDATE SET
    interval_ms = excluded.interval_ms, target_ms = excluded.target_ms,
    value = excluded.value, observed_probability = excluded.observed_probability,
    model_version = excluded.model_version, newest_input_ms = excluded.newest_input_ms,
    missing_fraction = excluded.missing_fraction, made_ms = excluded.made_ms,
    scored = 0, actual = NULL"""
LATEST_FORECASTS = """SELECT f.segment_id, f.origin_ms, f.interval_ms, f.value,
      f.observed_probability, f.model_version, f.newest_input_ms,
      f.missing_fraction, f.made_ms
   FROM forecasts f
   JOIN (SELECT segment_id, MAX(origin_ms) AS origin_ms
         FROM forecasts GROUP BY segment_id) newest
   USING (segment_id, origin_ms)
   ORDER BY f.segment_id, f.horizon"""
SCORE_FORECASTS = """UPDATE forecasts SET scored = 1, actual = (
       SELECT AVG(o.value) FROM observations o
       WHERE o.segment_id = forecasts.segment_id
         AND o.time_ms >= forecasts.target_ms
         AND o.time_ms < forecasts.target_ms + forecasts.interval_ms)
   WHERE scored = 0 AND target_ms + interval_ms <= ?"""


class ForecastStore(Protocol):
    """Observations, weather and forecasts of the city's segments."""

    def add_observations(self, records: Sequence[ObservationRecord], received_ms: int) -> int:
        """Store observations not stored yet (segment, time, source); return how many."""

    def add_weather(self, records: Sequence[WeatherRecord], received_ms: int) -> int:
        """Store weather not stored yet (time, source); return how many."""

    def observations(self, segment_id: str, from_ms: int, to_ms: int) -> list[ObservationRecord]:
        """A segment's observations within [from_ms, to_ms], oldest first."""

    def observations_between(self, from_ms: int, to_ms: int) -> list[tuple[str, int, float]]:
        """(segment, time, value) of every observation in [from_ms, to_ms), oldest first."""

    def newest_observation_ms(self) -> int | None:
        """Time of the newest observation of any segment (None: there is none)."""

    def weather_between(self, from_ms: int, to_ms: int) -> list[tuple[int, str]]:
        """(time, code) of the weather in [from_ms, to_ms), oldest first."""

    def save_forecasts(self, forecasts: Sequence[SegmentForecast]) -> None:
        """Store forecasts, replacing any of the same segment and origin."""

    def latest_forecasts(self) -> list[SegmentForecast]:
        """Each segment's forecast from its newest origin."""

    def score_forecasts(self, complete_before_ms: int) -> int:
        """Score forecasts whose target interval ended by ``complete_before_ms`` against the
        mean observation of that interval; return how many were scored."""

    def forecast_scores(self, model_version: str) -> list[HorizonScore]:
        """Online MAE per horizon of a model version's scored forecasts."""

    def prune_forecasts(self, before_ms: int) -> int:
        """Delete forecasts made for origins before ``before_ms``; return rows deleted."""


class ForecastRows(Sessions):
    """``ForecastStore`` in the statements both engines run."""

    def add_observations(self, records: Sequence[ObservationRecord], received_ms: int) -> int:
        with self._write() as db:
            return db.executemany(
                "INSERT INTO observations (segment_id, time_ms, source, value, unit, "
                "received_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (r.segment_id, r.time_ms, r.source, r.value, r.unit, received_ms)
                    for r in records
                ],
            )

    def add_weather(self, records: Sequence[WeatherRecord], received_ms: int) -> int:
        with self._write() as db:
            return db.executemany(
                "INSERT INTO weather (time_ms, source, code, received_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(r.time_ms, r.source, r.code, received_ms) for r in records],
            )

    def observations(self, segment_id: str, from_ms: int, to_ms: int) -> list[ObservationRecord]:
        with self._read() as db:
            rows = db.rows(
                "SELECT segment_id, time_ms, value, unit, source FROM observations "
                "WHERE segment_id = ? AND time_ms BETWEEN ? AND ? ORDER BY time_ms, source",
                [segment_id, from_ms, to_ms],
            )
        return [
            ObservationRecord(str(s), int(t), float(v), str(u), str(src))
            for s, t, v, u, src in rows
        ]

    def observations_between(self, from_ms: int, to_ms: int) -> list[tuple[str, int, float]]:
        with self._read() as db:
            rows = db.rows(
                "SELECT segment_id, time_ms, value FROM observations "
                "WHERE time_ms >= ? AND time_ms < ? ORDER BY time_ms",
                [from_ms, to_ms],
            )
        return [(str(s), int(t), float(v)) for s, t, v in rows]

    def newest_observation_ms(self) -> int | None:
        with self._read() as db:
            ((newest,),) = db.rows("SELECT MAX(time_ms) FROM observations")
        return int(newest) if newest is not None else None

    def weather_between(self, from_ms: int, to_ms: int) -> list[tuple[int, str]]:
        with self._read() as db:
            rows = db.rows(
                "SELECT time_ms, code FROM weather WHERE time_ms >= ? AND time_ms < ? "
                "ORDER BY time_ms, source",
                [from_ms, to_ms],
            )
        return [(int(t), str(c)) for t, c in rows]

    def save_forecasts(self, forecasts: Sequence[SegmentForecast]) -> None:
        rows = [
            (
                f.segment_id,
                f.origin_ms,
                horizon,
                f.interval_ms,
                f.target_ms(horizon),
                value,
                f.observed_probability[horizon - 1],
                f.model_version,
                f.newest_input_ms,
                f.missing_fraction,
                f.made_ms,
            )
            for f in forecasts
            for horizon, value in enumerate(f.values, start=1)
        ]
        with self._write() as db:
            db.executemany(SAVE_FORECASTS, rows)

    def latest_forecasts(self) -> list[SegmentForecast]:
        with self._read() as db:
            rows = db.rows(LATEST_FORECASTS)
        grouped: dict[str, list[Row]] = {}
        for row in rows:
            grouped.setdefault(str(row[0]), []).append(row)
        return [
            SegmentForecast(
                segment_id=segment,
                origin_ms=int(group[0][1]),
                interval_ms=int(group[0][2]),
                values=tuple(float(r[3]) for r in group),
                observed_probability=tuple(float(r[4]) for r in group),
                model_version=str(group[0][5]),
                newest_input_ms=int(group[0][6]),
                missing_fraction=float(group[0][7]),
                made_ms=int(group[0][8]),
            )
            for segment, group in grouped.items()
        ]

    def score_forecasts(self, complete_before_ms: int) -> int:
        with self._write() as db:
            return db.execute(SCORE_FORECASTS, [complete_before_ms])

    def forecast_scores(self, model_version: str) -> list[HorizonScore]:
        with self._read() as db:
            rows = db.rows(
                "SELECT horizon, AVG(ABS(value - actual)), COUNT(*) FROM forecasts "
                "WHERE scored = 1 AND actual IS NOT NULL AND model_version = ? "
                "GROUP BY horizon ORDER BY horizon",
                [model_version],
            )
        return [HorizonScore(int(h), float(mae), int(n)) for h, mae, n in rows]

    def prune_forecasts(self, before_ms: int) -> int:
        with self._write() as db:
            return db.execute("DELETE FROM forecasts WHERE origin_ms < ?", [before_ms])
