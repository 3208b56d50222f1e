"""The forecast job: every model interval, forecast every segment in one batched call.

The job works in data time. Observations are averaged into the model's
intervals; the newest complete interval is the *origin* (the newest interval
with data, and never the wall clock's current, still filling, interval). When
the origin moves, or the model changes, or ``every_s`` has passed, the job
builds the input window of every segment the model knows, runs the model once
for all of them, stores the forecasts and scores older forecasts whose target
interval is now complete against the observations that arrived for it.

A new model (ONNX + card) dropped over the configured path is picked up on the
next poll; until its card matches it, the old model keeps serving.

Several processes may serve forecasts; only the holder of a ``LeaderLock`` runs the model
(``roadsense.cloud.leader``). The others follow: each poll they read the newest forecasts
and scores the leader stored, and try to take the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from roadsense.cloud.config import ForecastConfig
from roadsense.cloud.domain import HorizonScore, SegmentForecast
from roadsense.cloud.forecast.feeds import interval_means
from roadsense.cloud.forecast.rows import ForecastStore
from roadsense.cloud.leader import LeaderLock, Leadership
from roadsense.core.errors import ModelLoadError, StoreError
from roadsense.core.timeutil import now_ms
from roadsense.models.card import card_path_for
from roadsense.models.forecast.runtime import OnnxForecaster

logger = logging.getLogger(__name__)


@dataclass
class ForecastStats:
    """What the job has done since start (for metrics)."""

    runs: int = 0
    segments: int = 0
    last_run_s: float = 0.0
    scored: int = 0
    model_loads: int = 0
    load_failures: int = 0
    last_error: str = ""
    leading: bool = False
    """Whether this process runs the model now (False: it follows the leader's forecasts)."""


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    """(mtime, size) of the model and its card; None when either is missing."""
    try:
        model, card = path.stat(), card_path_for(path).stat()
    except OSError:
        return None
    return (model.st_mtime_ns, model.st_size, card.st_mtime_ns, card.st_size)


class ForecastJob:
    """Runs the forecaster over the store's observations and keeps the latest forecasts."""

    def __init__(
        self,
        config: ForecastConfig,
        store: ForecastStore,
        *,
        leader: LeaderLock | None = None,
        lead: bool = True,
        on_store_state: Callable[[bool], None] | None = None,
    ) -> None:
        """``lead=False`` only follows (an API replica); with ``leader`` the job runs the model
        only while it holds that lock; with neither it always runs it (one process).
        ``on_store_state`` hears False when a poll finds the store away and True when a poll
        works again."""
        self._config = config
        self._on_store_state = on_store_state
        self._store_available = True
        self._store = store
        self._leadership = Leadership(leader if lead else None, "forecast")
        self._lead = lead
        self._lock = threading.Lock()
        self._model: OnnxForecaster | None = None
        self._stamp: tuple[int, int, int, int] | None = None
        self._latest = {f.segment_id: f for f in store.latest_forecasts()}
        self._scores: list[HorizonScore] = []
        self._last_key: tuple[int, str] | None = None
        self._last_run_ms = 0
        self.stats = ForecastStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="forecast", daemon=True)

    @property
    def stale_after_ms(self) -> int:
        """Inputs older than this make a forecast stale."""
        return int(self._config.stale_after_s * 1000)

    def model(self) -> OnnxForecaster | None:
        """The model serving now (None until one loads)."""
        with self._lock:
            return self._model

    def latest(self) -> dict[str, SegmentForecast]:
        """Each segment's newest forecast."""
        with self._lock:
            return self._latest

    def scores(self) -> list[HorizonScore]:
        """Online MAE per horizon of the serving model, as of the last run (read by the API
        and the metrics, so neither aggregates the forecasts table on its own)."""
        with self._lock:
            return self._scores

    # Model ------------------------------------------------------------------

    def refresh_model(self) -> None:
        """Load the configured model when it (or its card) changed on disk."""
        path = self._config.model
        stamp = _stamp(path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            model = OnnxForecaster(path, threads=self._config.threads)
        except ModelLoadError as err:
            self.stats.load_failures += 1
            self.stats.last_error = str(err)
            current = self.model()
            keeping = f"; still serving version {current.version}" if current else ""
            logger.error("forecaster not loaded: %s%s", err, keeping)
            return
        scores = self._store.forecast_scores(model.version)
        with self._lock:
            previous = self._model
            self._model = model
            self._scores = scores
        self.stats.model_loads += 1
        self.stats.last_error = ""
        logger.info(
            "forecaster version %s loaded from %s (%d segments, window %d x %d min)%s",
            model.version,
            path,
            len(model.card.segment_ids),
            model.card.window,
            model.card.interval_ms // 60_000,
            f", replacing {previous.version}" if previous else "",
        )

    # One run ---------------------------------------------------------------

    def run_once(self, now: int | None = None, force: bool = True) -> int:
        """Forecast from the newest complete interval; return segments forecast (0: none)."""
        self.refresh_model()
        model = self.model()
        newest = self._store.newest_observation_ms()
        if model is None or newest is None:
            return 0
        now = now_ms() if now is None else now
        interval = model.card.interval_ms
        origin = min(newest // interval, now // interval - 1) * interval
        key = (origin, model.version)
        every_ms = (self._config.every_s or interval / 1000) * 1000
        if not force and key == self._last_key and now - self._last_run_ms < every_ms:
            return 0
        started = time.perf_counter()
        forecasts = self._forecast(model, origin, now)
        self._store.save_forecasts(forecasts)
        with self._lock:
            self._latest = {**self._latest, **{f.segment_id: f for f in forecasts}}
        scored = self._store.score_forecasts(origin + interval)
        scores = self._store.forecast_scores(model.version)
        with self._lock:
            self._scores = scores
        self._last_key, self._last_run_ms = key, now
        self.stats.runs += 1
        self.stats.segments = len(forecasts)
        self.stats.scored += scored
        self.stats.last_run_s = time.perf_counter() - started
        logger.debug(
            "forecast from %d: %d segments in %.3f s, %d scored",
            origin,
            len(forecasts),
            self.stats.last_run_s,
            scored,
        )
        return len(forecasts)

    def _forecast(self, model: OnnxForecaster, origin: int, now: int) -> list[SegmentForecast]:
        interval, window = model.card.interval_ms, model.card.window
        start = origin - (window - 1) * interval
        means = interval_means(
            self._store.observations_between(start, origin + interval),
            model.index,
            start_ms=start,
            interval_ms=interval,
            intervals=window,
        )
        values, observed, newest_input = means.values, means.observed, means.newest_ms
        weather_rows = self._store.weather_between(start, origin + interval)
        weather = None
        if weather_rows:
            weather = np.full(window, -1, dtype=np.int64)
            for time_ms, code in weather_rows:  # oldest first: the newest of an interval wins
                weather[(time_ms - start) // interval] = model.weather_code(code)
        times = [
            datetime.fromtimestamp((start + i * interval) / 1000, tz=timezone.utc)
            for i in range(window)
        ]
        result = model.predict(values, observed, times, weather)
        probability = (
            result.observed_probability
            if result.observed_probability is not None
            else np.ones_like(result.values)
        )
        missing = 1.0 - observed.mean(axis=0)
        return [
            SegmentForecast(
                segment_id=segment,
                origin_ms=origin,
                interval_ms=interval,
                values=tuple(round(float(v), 3) for v in result.values[column]),
                observed_probability=tuple(round(float(p), 4) for p in probability[column]),
                model_version=model.version,
                newest_input_ms=int(newest_input[column]),
                missing_fraction=round(float(missing[column]), 4),
                made_ms=now,
            )
            for column, segment in enumerate(model.card.segment_ids)
        ]

    # Thread -------------------------------------------------------------------

    def start(self) -> None:
        """Run in the background until stop()."""
        self._thread.start()

    def take_lead(self) -> bool:
        """Whether this process should run the model now (taking the lock when it can)."""
        if not self._lead:
            return False
        self.stats.leading = self._leadership.take()
        return self.stats.leading

    def follow(self) -> None:
        """Read the forecasts and scores the leader stored (and the model, for its card)."""
        self.refresh_model()
        latest = {f.segment_id: f for f in self._store.latest_forecasts()}
        model = self.model()
        scores = self._store.forecast_scores(model.version) if model else []
        with self._lock:
            self._latest = latest
            self._scores = scores

    def _loop(self) -> None:
        poll_s = self._config.poll_s
        # The newest forecasts were loaded from the store: a sole job's first run can wait a
        # poll; with a lock, look for it at once.
        delay = poll_s if self._lead and not self._leadership.shared else 0.0
        while not self._stop.wait(delay):
            try:
                if self.take_lead():
                    self.run_once(force=False)
                    delay = poll_s
                else:
                    self.follow()
                    delay = min(poll_s, self._config.lock_poll_s) if self._lead else poll_s
                self._store_state(True)
            except StoreError as err:
                if self._store_available:  # once per outage: it may last a while
                    logger.warning("forecast: the store is away (%s); retrying each poll", err)
                self._store_state(False)
                delay = poll_s
            except Exception as err:
                if self.stats.leading:
                    logger.exception("forecast run failed; retrying at the next poll")
                else:  # a follower has nothing to lose: the store may be away a while
                    logger.warning("forecast: cannot read stored forecasts (%s); retrying", err)
                delay = poll_s

    def _store_state(self, available: bool) -> None:
        """Tell ``on_store_state`` when the store went away or came back."""
        if available != self._store_available:
            self._store_available = available
            if available:
                logger.info("forecast: the store is back")
            if self._on_store_state is not None:
                self._on_store_state(available)

    def stop(self) -> None:
        """Stop the background thread and let the lock go."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._leadership.shared:
            self._leadership.release()
            self.stats.leading = False
