"""Prometheus metrics of the cloud service.

Counters and gauges are read from the live objects at scrape time (ingest
stats, queue depth, dead letters by problem code, watchers); latencies are
histograms fed as calls and writes happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from roadsense.cloud.city.watch import ChangeFeed
from roadsense.cloud.forecast.job import ForecastJob
from roadsense.cloud.ingest.subscriber import IngestWorker
from roadsense.cloud.store.interface import CityStore

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class CloudMetrics:
    """The registry of one cloud worker."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpc_seconds = Histogram(
            "roadsense_cloud_rpc_seconds",
            "gRPC call duration by method and status (streams: until they end).",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.capture_to_store_seconds = Histogram(
            "roadsense_cloud_capture_to_store_seconds",
            "Lag from a report's capture on the device to its commit in the store.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=self.registry,
        )

    def watch(
        self,
        ingest: IngestWorker | None,
        store: CityStore,
        feed: ChangeFeed,
        forecasts: ForecastJob | None = None,
    ) -> None:
        """Report the live figures of these objects (no ingest figures without an ingest)."""
        self.registry.register(_LiveCollector(ingest, store, feed))
        if forecasts is not None:
            self.registry.register(_ForecastCollector(forecasts))


class _LiveCollector(Collector):
    def __init__(self, ingest: IngestWorker | None, store: CityStore, feed: ChangeFeed) -> None:
        self._ingest = ingest
        self._store = store
        self._feed = feed

    def collect(self) -> Iterator[Metric]:
        if self._ingest is not None:
            yield from self._ingest_metrics(self._ingest)
        dead = CounterMetricFamily(
            "roadsense_cloud_dead_letters", "Dead-lettered messages by problem.", labels=["code"]
        )
        for code, count in sorted(self._store.dead_letter_codes().items()):
            dead.add_metric([code], count)
        yield dead
        yield GaugeMetricFamily(
            "roadsense_cloud_watchers", "Open WatchCityState streams.", value=len(self._feed)
        )

    @staticmethod
    def _ingest_metrics(ingest: IngestWorker) -> Iterator[Metric]:
        stats = ingest.stats()
        for name, value, doc in (
            ("received", stats.received, "Messages taken from the broker."),
            ("accepted", stats.accepted, "Reports stored."),
            ("duplicates", stats.duplicates, "Reports already stored (redelivery)."),
            ("rejected", stats.rejected, "Messages dead-lettered."),
            ("backpressure_waits", stats.backpressure_waits, "Times the ingest queue was full."),
            ("write_failures", stats.write_failures, "Batch writes that failed and were retried."),
        ):
            yield CounterMetricFamily(f"roadsense_cloud_ingest_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "roadsense_cloud_ingest_queue_depth",
            "Messages waiting for the writer.",
            value=ingest.queue_depth(),
        )
        yield GaugeMetricFamily(
            "roadsense_cloud_ingest_connected",
            "1 while the ingest is connected to the broker.",
            value=float(ingest.is_connected()),
        )


class _ForecastCollector(Collector):
    def __init__(self, job: ForecastJob) -> None:
        self._job = job

    def collect(self) -> Iterator[Metric]:
        stats = self._job.stats
        yield CounterMetricFamily(
            "roadsense_cloud_forecast_runs", "Forecast job runs.", value=stats.runs
        )
        yield CounterMetricFamily(
            "roadsense_cloud_forecast_model_load_failures",
            "Forecaster models that failed to load (the previous one kept serving).",
            value=stats.load_failures,
        )
        yield GaugeMetricFamily(
            "roadsense_cloud_forecast_segments",
            "Segments forecast by the last run.",
            value=stats.segments,
        )
        yield GaugeMetricFamily(
            "roadsense_cloud_forecast_run_seconds",
            "Duration of the last forecast run (read, one batched model call, store, score).",
            value=stats.last_run_s,
        )
        yield GaugeMetricFamily(
            "roadsense_cloud_forecast_leader",
            "1 while this process runs the forecast job (holds the forecast lock).",
            value=float(stats.leading),
        )
        model = self._job.model()
        if model is None:
            return
        info = GaugeMetricFamily(
            "roadsense_cloud_forecast_model", "The forecaster serving (1).", labels=["version"]
        )
        info.add_metric([model.version], 1)
        yield info
        mae = GaugeMetricFamily(
            "roadsense_cloud_forecast_online_mae",
            "Mean absolute error of the serving model's forecasts against the observations "
            "that arrived later, by horizon (steps).",
            labels=["horizon"],
        )
        scored = CounterMetricFamily(
            "roadsense_cloud_forecast_scored",
            "Forecasts of the serving model scored against later observations, by horizon.",
            labels=["horizon"],
        )
        for score in self._job.scores():
            mae.add_metric([str(score.horizon)], score.mae)
            scored.add_metric([str(score.horizon)], score.scored)
        yield mae
        yield scored


class RpcTimingInterceptor(grpc.ServerInterceptor):
    """Times every RPC into ``roadsense_cloud_rpc_seconds``."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        histogram = self._histogram
        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    return inner_unary(request, context)
                finally:
                    histogram.labels(method, _code(context)).observe(time.perf_counter() - started)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                started = time.perf_counter()
                try:
                    yield from inner_stream(request, context)
                finally:
                    histogram.labels(method, _code(context)).observe(time.perf_counter() - started)

            return grpc.unary_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        return handler


def _code(context: grpc.ServicerContext) -> str:
    code = context.code() if hasattr(context, "code") else None
    return code.name if isinstance(code, grpc.StatusCode) else "OK"
