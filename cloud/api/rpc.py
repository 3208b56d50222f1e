"""gRPC servicers: they translate between protobuf and the domain, nothing more."""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Hashable, Iterator, Mapping
from typing import Any

import grpc

from roadsense.cloud.api.classify import ImageClassifier
from roadsense.cloud.api.measure import ImageMeasurer
from roadsense.cloud.api.messages import (
    bin_message,
    camera_message,
    forecast_message,
    ingest_response,
    segment_entry,
    segment_info,
    segment_message,
)
from roadsense.cloud.api.queries import (
    bin_range,
    check_count,
    check_min_level,
    check_road_classes,
    history_range,
)
from roadsense.cloud.api.state_cache import EncodedAnswer, EncodedStateCache
from roadsense.cloud.api.status import streaming, unary
from roadsense.cloud.city.segments import SegmentConfig, unconfigured
from roadsense.cloud.city.state import CityTracker, congestion_index, segments_per_band
from roadsense.cloud.city.watch import ChangeFeed
from roadsense.cloud.domain import SegmentSnapshot
from roadsense.cloud.forecast.feeds import check_observations, check_weather
from roadsense.cloud.forecast.job import ForecastJob
from roadsense.cloud.store.interface import Store
from roadsense.core.errors import NotConfiguredError, NotFoundError, NotServingError, RequestError
from roadsense.core.timeutil import now_ms
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE = city_pb2.DESCRIPTOR.services_by_name["CityService"].full_name
INDEX_CACHE_MS = 1000
WATCH_POLL_S = 0.5
"""How often an idle watch stream checks whether its client is still there."""
DEFLATE_LEVEL = 1
"""zlib level of GetCityStateDeflated: 10,000 segments deflate to 0.2-0.3 of their size in
about 6 ms once per answer; level 6 saves a tenth more bytes for four times the time."""
DEFLATED_QUESTION = b"deflated:"
"""Cache key prefix of deflated answers; no encoded GetCityStateRequest starts with it."""


class CityServicer(city_pb2_grpc.CityServiceServicer):
    """roadsense.v1.CityService."""

    def __init__(
        self,
        tracker: CityTracker,
        feed: ChangeFeed,
        store: Store,
        *,
        city: Mapping[str, SegmentConfig],
        history_interval_ms: int,
        max_future_ms: int,
        forecasts: ForecastJob | None = None,
        images: ImageClassifier | None = None,
        measurer: ImageMeasurer | None = None,
    ) -> None:
        self._images = images
        self._measurer = measurer
        self._max_future_ms = max_future_ms
        self._forecasts = forecasts
        self._tracker = tracker
        self._feed = feed
        self._store = store
        self._city = city
        self._history_interval_ms = history_interval_ms
        # Every watcher sends the city index with each change; with thousands of
        # segments and many watchers, computing it per message would dominate.
        self._index_lock = threading.Lock()
        self._index_cache: tuple[int, float] = (0, 0.0)
        self.answers = EncodedStateCache()

    def _city_state(
        self, segment_ids: list[str], request: city_pb2.GetCityStateRequest | None = None
    ) -> city_pb2.CityState:
        now = now_ms()
        segments, state = self._city_parts(self._tracker.snapshot(now, segment_ids), request, now)
        state.segments.extend(segment_message(s) for s in segments)
        return state

    def _city_parts(
        self,
        snapshot: list[SegmentSnapshot],
        request: city_pb2.GetCityStateRequest | None,
        now: int,
    ) -> tuple[list[SegmentSnapshot], city_pb2.CityState]:
        """The segments of a city state and the state's other fields (segments left empty)."""
        segments = snapshot if request is None else self._filtered(snapshot, request)
        online, offline = self._store.device_counts()
        return segments, city_pb2.CityState(
            congestion_index=congestion_index(segments, self._city),
            as_of_ms=now,
            devices_online=online,
            devices_offline=offline,
            segments_per_band=segments_per_band(segments),
        )

    def _filtered(
        self, segments: list[SegmentSnapshot], request: city_pb2.GetCityStateRequest
    ) -> list[SegmentSnapshot]:
        classes = check_road_classes(request.road_classes)
        min_level = check_min_level(request.min_level)

        def road_class(segment_id: str) -> str:
            config = self._city.get(segment_id)
            return config.road_class if config else "local"

        return [
            s
            for s in segments
            if s.level >= min_level
            and not (request.exclude_stale and s.stale)
            and (not classes or road_class(s.segment_id) in classes)
        ]

    def _current_index(self, now: int) -> float:
        """The whole city's index, recomputed at most once per INDEX_CACHE_MS."""
        with self._index_lock:
            computed_at, value = self._index_cache
            if now - computed_at >= INDEX_CACHE_MS:
                value = congestion_index(self._tracker.snapshot(now), self._city)
                self._index_cache = (now, value)
            return value

    def _info(self, segment_id: str) -> city_pb2.SegmentInfo:
        config = self._city.get(segment_id)
        return segment_info(config or unconfigured(segment_id), configured=config is not None)

    @unary
    def ListSegments(  # noqa: N802 - gRPC method name
        self, request: city_pb2.ListSegmentsRequest, context: grpc.ServicerContext
    ) -> city_pb2.ListSegmentsResponse:
        states = self._tracker.snapshot(now_ms())
        ids = sorted(self._city.keys() | {s.segment_id for s in states})
        return city_pb2.ListSegmentsResponse(
            segments=[self._info(i) for i in ids],
            states=[segment_message(s) for s in states],
        )

    @unary
    def GetSegment(  # noqa: N802 - gRPC method name
        self, request: city_pb2.GetSegmentRequest, context: grpc.ServicerContext
    ) -> city_pb2.GetSegmentResponse:
        now = now_ms()
        (state,) = self._tracker.snapshot(now, [request.segment_id]) or (None,)
        if state is None and request.segment_id not in self._city:
            raise NotFoundError(f"no segment {request.segment_id[:100]!r}")
        from_ms, to_ms = history_range(request.from_ms, request.to_ms, now)
        history = self._store.history(request.segment_id, from_ms, to_ms)
        return city_pb2.GetSegmentResponse(
            info=self._info(request.segment_id),
            state=segment_message(state) if state else None,
            history=[
                city_pb2.HistoryPoint(start_ms=p.start_ms, level=p.level, reports=p.reports)
                for p in history
            ],
            interval_ms=self._history_interval_ms,
            cameras=[
                camera_message(c) for c in self._store.camera_measurements(request.segment_id)
            ],
        )

    @unary
    def GetSegmentBins(  # noqa: N802 - gRPC method name
        self, request: city_pb2.GetSegmentBinsRequest, context: grpc.ServicerContext
    ) -> city_pb2.GetSegmentBinsResponse:
        from_ms, to_ms, bin_ms = bin_range(request.from_ms, request.to_ms, request.bin_minutes)
        if request.segment_id not in self._city and not self._tracker.snapshot(
            now_ms(), [request.segment_id]
        ):
            raise NotFoundError(f"no segment {request.segment_id[:100]!r}")
        bins = self._store.measurement_bins(request.segment_id, from_ms, to_ms, bin_ms)
        return city_pb2.GetSegmentBinsResponse(
            segment_id=request.segment_id, bin_ms=bin_ms, bins=[bin_message(b) for b in bins]
        )

    @unary
    def IngestObservations(  # noqa: N802 - gRPC method name
        self, request: city_pb2.IngestObservationsRequest, context: grpc.ServicerContext
    ) -> city_pb2.IngestResponse:
        items = list(request.observations)
        check_count("observations", len(items))
        now = now_ms()
        records, refused = check_observations(items, now, self._max_future_ms)
        stored = self._store.add_observations(records, now)
        return ingest_response(stored, len(records) - stored, refused)

    @unary
    def IngestWeather(  # noqa: N802 - gRPC method name
        self, request: city_pb2.IngestWeatherRequest, context: grpc.ServicerContext
    ) -> city_pb2.IngestResponse:
        items = list(request.weather)
        check_count("weather observations", len(items))
        now = now_ms()
        records, refused = check_weather(items, now, self._max_future_ms)
        stored = self._store.add_weather(records, now)
        return ingest_response(stored, len(records) - stored, refused)

    @unary
    def GetForecast(  # noqa: N802 - gRPC method name
        self, request: city_pb2.GetForecastRequest, context: grpc.ServicerContext
    ) -> city_pb2.GetForecastResponse:
        job = self._forecasts
        if job is None:
            raise NotConfiguredError(
                "forecasting is off in this cloud's configuration ([forecast] enabled = false)"
            )
        model = job.model()
        if model is None:
            reason = job.stats.last_error or "it has not been loaded yet"
            raise NotServingError(f"no forecaster model serving: {reason}")
        check_count("segment_ids", len(request.segment_ids))
        known = range(1, max(model.card.horizons) + 1)
        wrong = sorted(set(request.horizons) - set(known))
        if wrong:
            raise RequestError(
                f"horizons {wrong[:10]} are not forecast; model {model.version} forecasts "
                f"1..{known[-1]} steps of {model.card.interval_ms // 60_000} min"
            )
        horizons = sorted(set(request.horizons)) or list(known)
        latest = job.latest()
        now = now_ms()
        response = city_pb2.GetForecastResponse(
            model_version=model.version, interval_ms=model.card.interval_ms
        )
        for segment_id in request.segment_ids or sorted(latest):
            forecast = latest.get(segment_id)
            if forecast is None:
                response.unavailable[segment_id] = (
                    "no forecast yet: no observations have arrived"
                    if segment_id in model.index
                    else f"model {model.version} was not trained on this segment"
                )
                continue
            response.forecasts.append(forecast_message(forecast, horizons, now, job.stale_after_ms))
        response.online.extend(
            city_pb2.HorizonScore(horizon=s.horizon, mae=s.mae, scored=s.scored)
            for s in job.scores()
            if s.horizon in horizons
        )
        return response

    @unary
    def ClassifyImage(  # noqa: N802 - gRPC method name
        self, request: city_pb2.ClassifyImageRequest, context: grpc.ServicerContext
    ) -> city_pb2.ClassifyImageResponse:
        if self._images is None:
            raise NotConfiguredError("image classification is not enabled ([classify])")
        result = self._images.classify(request.image, explain=request.explain)
        return city_pb2.ClassifyImageResponse(
            labels=result.labels,
            probabilities=result.probabilities,
            level=result.level,
            confidence=result.confidence,
            model_version=result.model_version,
            heat_map_png=result.heat_map_png,
        )

    @unary
    def MeasureImage(  # noqa: N802 - gRPC method name
        self, request: city_pb2.MeasureImageRequest, context: grpc.ServicerContext
    ) -> city_pb2.MeasureImageResponse:
        if self._measurer is None:
            raise NotConfiguredError("image measurement is not enabled ([classify] detector)")
        result = self._measurer.measure(request.image, list(request.zone), request.explain)
        return city_pb2.MeasureImageResponse(
            vehicles=[
                city_pb2.DetectedVehicle(
                    x1=x1, y1=y1, x2=x2, y2=y2, vehicle_class=name, score=score
                )
                for (x1, y1, x2, y2), name, score in zip(
                    result.xyxy, result.classes, result.scores, strict=True
                )
            ],
            occupancy=result.occupancy,
            detector_version=result.detector_version,
            evidence_png=result.evidence_png,
        )

    @unary
    def GetCityState(  # noqa: N802 - gRPC method name
        self, request: city_pb2.GetCityStateRequest, context: grpc.ServicerContext
    ) -> city_pb2.CityState:
        """The city state, decoded: for in-process callers only.

        The server does not call this method. ``add_city_service`` serves GetCityState with
        ``encoded_city_state`` below and sends its cached bytes as they are, so a large city
        is encoded once per change, not once per caller. Read that method for what the
        wire answers.
        """
        return city_pb2.CityState.FromString(self.encoded_city_state(request, context))

    @unary
    def encoded_city_state(
        self, request: city_pb2.GetCityStateRequest, context: grpc.ServicerContext
    ) -> bytes:
        """GetCityState's answer, encoded: shared while the city has not changed."""
        version, now = self._checked_version(request)
        return self._state_answer(request, version, now).encoded

    def _checked_version(self, request: city_pb2.GetCityStateRequest) -> tuple[Hashable, int]:
        """The city's version and the time, once the request is checked."""
        check_count("segment_ids", len(request.segment_ids))
        # The version is read before the state, so a change while building makes a new one.
        return (self._tracker.version, self._feed.version), now_ms()

    def _state_answer(
        self, request: city_pb2.GetCityStateRequest, version: Hashable, now: int
    ) -> EncodedAnswer:
        def build() -> EncodedAnswer:
            snapshot = self._tracker.snapshot(now, list(request.segment_ids))
            segments, state = self._city_parts(snapshot, request, now)
            # Each segment's entry is encoded once per state; an answer only joins them.
            encoded = b"".join(segment_entry(s) for s in segments) + state.SerializeToString()
            fresh = [s.updated_ms for s in snapshot if not s.stale]
            # The answer holds until the first of its segments turns stale.
            until = min(fresh) + self._tracker.stale_after_ms + 1 if fresh else 2**62
            return EncodedAnswer(encoded, now, until)

        question = request.SerializeToString(deterministic=True)
        return self.answers.answer(question, version, now, build)

    @unary
    def encoded_city_state_deflated(
        self, request: city_pb2.GetCityStateRequest, context: grpc.ServicerContext
    ) -> bytes:
        """GetCityStateDeflated's answer, encoded: GetCityState's, deflated once per answer."""
        version, now = self._checked_version(request)

        def build() -> EncodedAnswer:
            plain = self._state_answer(request, version, now)
            deflated = city_pb2.DeflatedCityState(
                city_state=zlib.compress(plain.encoded, DEFLATE_LEVEL),
                encoded_size=len(plain.encoded),
            )
            return EncodedAnswer(deflated.SerializeToString(), plain.built_ms, plain.valid_until_ms)

        question = DEFLATED_QUESTION + request.SerializeToString(deterministic=True)
        return self.answers.get(question, version, now, build)

    @unary
    def GetCityStateDeflated(  # noqa: N802 - gRPC method name
        self, request: city_pb2.GetCityStateRequest, context: grpc.ServicerContext
    ) -> city_pb2.DeflatedCityState:
        """Decoded, for in-process callers; the server sends ``encoded_city_state_deflated``'s
        bytes instead (see ``GetCityState``)."""
        return city_pb2.DeflatedCityState.FromString(
            self.encoded_city_state_deflated(request, context)
        )

    @streaming
    def WatchCityState(  # noqa: N802 - gRPC method name
        self, request: city_pb2.WatchCityStateRequest, context: grpc.ServicerContext
    ) -> Iterator[city_pb2.CityStateUpdate]:
        check_count("segment_ids", len(request.segment_ids))
        # Subscribe before the snapshot so no change falls between the two.
        watcher = self._feed.subscribe(request.segment_ids)
        try:
            snapshot = self._city_state(list(request.segment_ids))
            yield city_pb2.CityStateUpdate(
                snapshot=snapshot, congestion_index=snapshot.congestion_index
            )
            while context.is_active() and not watcher.closed:
                changed = watcher.take(WATCH_POLL_S)
                if not changed:
                    continue
                now = now_ms()
                index = self._current_index(now)
                for snapshot_change in changed:
                    yield city_pb2.CityStateUpdate(
                        segment=segment_message(self._tracker.with_staleness(snapshot_change, now)),
                        congestion_index=index,
                    )
        finally:
            self._feed.unsubscribe(watcher)


class _HandlerRecorder:
    """Stands in for a server to read the generated code's method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """Ignored: the registered handlers below are the same."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self.handlers = dict(handlers)


def _already_encoded(answer: bytes) -> bytes:
    return answer


def add_city_service(servicer: CityServicer, server: grpc.Server) -> None:
    """Serve CityService on ``server``; GetCityState and GetCityStateDeflated send their cached
    bytes as they are."""
    recorder = _HandlerRecorder()
    city_pb2_grpc.add_CityServiceServicer_to_server(servicer, recorder)  # type: ignore[arg-type]
    handlers = recorder.handlers
    handlers["GetCityState"] = grpc.unary_unary_rpc_method_handler(
        servicer.encoded_city_state,
        request_deserializer=city_pb2.GetCityStateRequest.FromString,
        response_serializer=_already_encoded,
    )
    handlers["GetCityStateDeflated"] = grpc.unary_unary_rpc_method_handler(
        servicer.encoded_city_state_deflated,
        request_deserializer=city_pb2.GetCityStateRequest.FromString,
        response_serializer=_already_encoded,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
