"""Prometheus endpoint serving the figures of the agent's health message."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from roadsense.core.metrics import MetricsServer
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)

CAMERA_STATES = ("starting", "streaming", "stalled", "reconnecting", "failed", "ended", "disabled")


class HealthCollector(Collector):
    """Turns a DeviceHealth, taken at scrape time, into Prometheus metrics."""

    def __init__(self, health: Callable[[], telemetry_pb2.DeviceHealth]) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        h = self._health()
        device = [h.device_id]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            metric = GaugeMetricFamily(f"roadsense_edge_{name}", doc, labels=["device"])
            metric.add_metric(device, value)
            return metric

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            metric = CounterMetricFamily(f"roadsense_edge_{name}", doc, labels=["device"])
            metric.add_metric(device, value)
            return metric

        yield gauge("uptime_seconds", "Seconds since the agent started.", h.uptime_s)
        yield counter("frames_classified", "Frames classified.", h.frames_classified)
        yield counter("frames_uncertain", "Frames below the uncertainty floor.", h.frames_uncertain)
        yield counter("reports_created", "Reports stored in the outbox.", h.reports_created)
        yield counter(
            "reports_acknowledged", "Publications the broker acknowledged.", h.reports_acknowledged
        )
        yield counter(
            "reports_confirmed", "Reports the cloud confirmed it committed.", h.reports_confirmed
        )
        yield counter("outbox_dropped", "Reports dropped by outbox bounds.", h.outbox_dropped)
        yield counter("reports_lost", "Reports the outbox could not store.", h.reports_lost)
        yield counter("snapshots_sent", "Camera stills sent on request.", h.snapshots_sent)
        yield gauge("outbox_depth", "Reports not yet delivered.", h.outbox_pending)
        yield gauge(
            "outbox_awaiting_cloud",
            "Reports the broker has that wait for the cloud's confirmation.",
            h.outbox_awaiting_cloud,
        )
        yield gauge("outbox_bytes", "Payload bytes in the outbox.", h.outbox_bytes)
        yield gauge(
            "outbox_oldest_age_seconds", "Age of the oldest unsent report.", h.outbox_oldest_age_s
        )
        yield gauge(
            "inference_latency_p50_ms", "Median classifier call latency.", h.inference_p50_ms
        )
        yield gauge("inference_latency_p95_ms", "95th percentile latency.", h.inference_p95_ms)
        yield gauge("batch_size_mean", "Mean frames per classifier call.", h.mean_batch_size)
        fps = GaugeMetricFamily(
            "roadsense_edge_camera_fps", "Frames decoded per second.", labels=["device", "camera"]
        )
        state = GaugeMetricFamily(
            "roadsense_edge_camera_state",
            "1 for the camera's current state.",
            labels=["device", "camera", "state"],
        )
        per_camera = ["device", "camera"]
        decoded = CounterMetricFamily(
            "roadsense_edge_camera_frames_decoded", "Frames decoded.", labels=per_camera
        )
        used = CounterMetricFamily(
            "roadsense_edge_camera_frames_used", "Frames the classifier took.", labels=per_camera
        )
        effective = GaugeMetricFamily(
            "roadsense_edge_camera_effective_sample_hz",
            "Distinct frames per second the classifier can get.",
            labels=per_camera,
        )
        for camera in h.cameras:
            labels = [h.device_id, camera.camera_id]
            fps.add_metric(labels, camera.fps)
            decoded.add_metric(labels, camera.frames_captured)
            used.add_metric(labels, camera.frames_used)
            effective.add_metric(labels, camera.effective_sample_hz)
            for name in CAMERA_STATES:
                state.add_metric([*labels, name], float(camera.state == name))
        yield from (fps, state, decoded, used, effective)
        yield gauge(
            "process_cpu_share",
            "CPU this process used over all cores (0-1) since the previous reading.",
            h.process_cpu_share,
        )
        temperature = GaugeMetricFamily(
            "roadsense_edge_temperature_celsius", "Thermal zones.", labels=["device", "zone"]
        )
        for zone, celsius in sorted(h.temperatures_c.items()):
            temperature.add_metric([h.device_id, zone], celsius)
        yield temperature


def serve_health_metrics(
    host: str, port: int, health: Callable[[], telemetry_pb2.DeviceHealth]
) -> MetricsServer:
    """Serve the agent's health figures for Prometheus."""
    registry = CollectorRegistry()
    registry.register(HealthCollector(health))
    return MetricsServer(host, port, registry)
