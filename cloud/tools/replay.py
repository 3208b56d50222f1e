"""`roadsense forecast replay`: stream a series CSV into the cloud as a city feed would.

Each row becomes one batch of ``IngestObservations`` (zeros are "no
observation" and are not sent) and, with a weather file, one
``IngestWeather``. Two ways to place the rows in time:

- ``original``: the file's own times, one row every ``interval / speedup``
  of wall time (speedup 0: as fast as the cloud takes them). For backfills
  and tests; the forecasts will be stale, as old data is.
- ``now``: the file shifted by whole weeks (time of day and day of week keep
  their meaning) so that the row for the current time is now; the rows before
  it are sent at once as history, later rows each when its time comes.

Every item carries (segment, time, source), which the cloud deduplicates, so a
call that failed half-way is simply sent again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import grpc

from roadsense.cloud.forecast.feeds import MAX_BATCH
from roadsense.core.errors import RoadSenseError
from roadsense.core.timeutil import now_ms
from roadsense.models.forecast.series import Series
from roadsense.proto.client import ClientTls, bearer, open_channel
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

logger = logging.getLogger(__name__)

WEEK_MS = 7 * 86_400_000
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
RPC_TIMEOUT_S = 30.0
Align = Literal["original", "now"]


class ReplayError(RoadSenseError):
    """The cloud refused the replay or could not be reached."""


@dataclass(frozen=True)
class ReplayTarget:
    """Where and as whom to send."""

    address: str
    token: str | None = None
    ca_file: Path | None = None
    retry_for_s: float = 60.0


@dataclass
class ReplaySummary:
    """What a replay sent and what the cloud said."""

    rows: int = 0
    observations_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    weather_accepted: int = 0
    shift_ms: int = 0
    first_time_ms: int = 0
    last_time_ms: int = 0
    rejections: list[str] = field(default_factory=list)


def _time_ms(series: Series, row: int) -> int:
    return round(series.times[row].timestamp() * 1000)


def week_shift(first_ms: int, now: int) -> int:
    """Whole weeks that move ``first_ms`` to the latest time at or before ``now``."""
    return (now - first_ms) // WEEK_MS * WEEK_MS


def _observations(
    series: Series, rows: Sequence[int], shift_ms: int, unit: str, source: str
) -> list[city_pb2.Observation]:
    return [
        city_pb2.Observation(
            segment_id=segment,
            time_ms=_time_ms(series, row) + shift_ms,
            value=float(series.values[row, column]),
            unit=unit,
            source=source,
        )
        for row in rows
        for column, segment in enumerate(series.segment_ids)
        if series.observed[row, column]
    ]


def _chunks(items: list[city_pb2.Observation]) -> Iterator[list[city_pb2.Observation]]:
    for start in range(0, len(items), MAX_BATCH):
        yield items[start : start + MAX_BATCH]


class _Client:
    def __init__(self, target: ReplayTarget) -> None:
        if target.ca_file is not None:
            try:
                tls = ClientTls.read(target.ca_file)
            except OSError as err:
                raise ReplayError(f"{target.ca_file}: cannot read CA: {err.strerror}") from err
            self._channel = open_channel(target.address, tls)
        else:
            self._channel = open_channel(target.address)
        self._stub = city_pb2_grpc.CityServiceStub(self._channel)
        self._metadata = bearer(target.token)
        self._retry_for_s = target.retry_for_s
        self._address = target.address

    def _call(self, method: Callable[..., city_pb2.IngestResponse], request: object) -> object:
        deadline = time.monotonic() + self._retry_for_s
        pause = 0.5
        while True:
            try:
                return method(request, timeout=RPC_TIMEOUT_S, metadata=self._metadata)
            except grpc.RpcError as err:
                code = err.code()
                if code in RETRYABLE and time.monotonic() + pause < deadline:
                    logger.warning("cloud at %s: %s; retrying", self._address, err.details())
                    time.sleep(pause)
                    pause = min(pause * 2, 10.0)
                    continue
                raise ReplayError(
                    f"cloud at {self._address} refused the replay: {code.name}: {err.details()}"
                ) from None

    def observations(self, items: list[city_pb2.Observation]) -> city_pb2.IngestResponse:
        request = city_pb2.IngestObservationsRequest(observations=items)
        response = self._call(self._stub.IngestObservations, request)
        assert isinstance(response, city_pb2.IngestResponse)
        return response

    def weather(self, items: list[city_pb2.WeatherObservation]) -> city_pb2.IngestResponse:
        request = city_pb2.IngestWeatherRequest(weather=items)
        response = self._call(self._stub.IngestWeather, request)
        assert isinstance(response, city_pb2.IngestResponse)
        return response

    def close(self) -> None:
        self._channel.close()


def replay(
    series: Series,
    target: ReplayTarget,
    *,
    speedup: float = 1.0,
    align: Align = "original",
    source: str = "replay",
    unit: str = "km/h",
    rows: range | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], int] = now_ms,
) -> ReplaySummary:
    """Send the rows (all by default) to the cloud; return what happened."""
    rows = rows if rows is not None else range(series.steps)
    if not rows:
        raise ReplayError("no rows to replay")
    if speedup < 0:
        raise ReplayError("speedup must be >= 0 (0: as fast as the cloud takes them)")
    summary = ReplaySummary()
    first = _time_ms(series, rows[0])
    started = clock()
    summary.shift_ms = week_shift(first, started) if align == "now" else 0
    client = _Client(target)
    try:
        for start, batch in _batches(series, rows, summary.shift_ms, align, started):
            due = _due_ms(
                series,
                start,
                first=first,
                shift_ms=summary.shift_ms,
                align=align,
                speedup=speedup,
                start=started,
            )
            wait_ms = due - clock() if due is not None else 0
            if wait_ms > 0:
                sleep(wait_ms / 1000)
            _send(client, series, batch, summary, unit=unit, source=source)
    finally:
        client.close()
    summary.first_time_ms = first + summary.shift_ms
    summary.last_time_ms = _time_ms(series, rows[-1]) + summary.shift_ms
    return summary


def _batches(
    series: Series, rows: range, shift_ms: int, align: Align, now: int
) -> Iterator[tuple[int, list[int]]]:
    """(first row, rows) sent together: history at once in ``now`` mode, else row by row."""
    history: list[int] = []
    if align == "now":
        history = [r for r in rows if _time_ms(series, r) + shift_ms <= now]
        for start in range(0, len(history), 64):
            yield history[start], history[start : start + 64]
    for row in rows[len(history) :]:
        yield row, [row]


def _due_ms(
    series: Series, row: int, *, first: int, shift_ms: int, align: Align, speedup: float, start: int
) -> int | None:
    """Wall time a row is due (None: now)."""
    if align == "now":
        return _time_ms(series, row) + shift_ms
    if speedup == 0:
        return None
    return start + round((_time_ms(series, row) - first) / speedup)


def _send(
    client: _Client,
    series: Series,
    rows: list[int],
    summary: ReplaySummary,
    *,
    unit: str,
    source: str,
) -> None:
    items = _observations(series, rows, summary.shift_ms, unit, source)
    for chunk in _chunks(items):
        response = client.observations(chunk)
        _count(summary, response, chunk)
    summary.observations_sent += len(items)
    if series.weather is not None:
        weather = [
            city_pb2.WeatherObservation(
                time_ms=_time_ms(series, row) + summary.shift_ms,
                code=str(int(series.weather[row])),
                source=source,
            )
            for row in rows
        ]
        response = client.weather(weather)
        summary.weather_accepted += response.accepted
        summary.rejected += len(response.rejected)
    summary.rows += len(rows)


def _count(
    summary: ReplaySummary, response: city_pb2.IngestResponse, sent: list[city_pb2.Observation]
) -> None:
    summary.accepted += response.accepted
    summary.duplicates += response.duplicates
    summary.rejected += len(response.rejected)
    for item in response.rejected:
        if len(summary.rejections) < 10:
            observation = sent[item.index]
            summary.rejections.append(
                f"{observation.segment_id} at {observation.time_ms}: {item.reason}"
            )
