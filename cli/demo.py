"""`roadsense demo`: the whole flow on one machine.

A broker on a free loopback port, the cloud service, and edge agents that
watch the real highway clip shipped with the project (two cameras each, one
segment shared by two devices so fusion shows), with a live terminal view of
the city state read through the gRPC API like any client would. A city feed
replays the shipped SZ-taxi speeds (shifted by whole weeks so the last row
sent is the newest interval before now) into ``IngestObservations``, and the
cloud's forecast job forecasts those 40 roads.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.live import Live
from rich.table import Table

from roadsense.cloud.api.auth import AuthConfig, TokenConfig, new_token
from roadsense.cloud.app import CloudService
from roadsense.cloud.config import (
    CloudConfig,
    DashboardConfig,
    ForecastConfig,
    GrpcConfig,
    IngestConfig,
    StoreConfig,
)
from roadsense.cloud.tools.replay import ReplaySummary, ReplayTarget, replay, week_shift
from roadsense.core.mqtt import MqttConfig
from roadsense.core.timeutil import now_ms
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.config import CameraConfig, EdgeConfig, OutboxConfig, ReportConfig
from roadsense.edge.measure.config import MeasureConfig
from roadsense.edge.runner import build_agent
from roadsense.harness.broker import RunningBroker, start_broker
from roadsense.models.forecast.series import load_series
from roadsense.models.shipped import SAMPLE_CLIP as SAMPLE_VIDEO
from roadsense.models.shipped import SZ_SPEEDS, SZ_WEATHER
from roadsense.proto.client import open_channel
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

logger = logging.getLogger(__name__)

RPC_TIMEOUT_S = 5.0


HIGHWAY_ROI = (0.0, 0.0, 0.85, 1.0)
"""The clip's road without its right verge (models/data/footage/cameras.csv)."""


def demo_edge_configs(agents: int, mqtt: MqttConfig, workdir: Path) -> list[EdgeConfig]:
    """Configs of the demo devices; device i's second camera shares a segment with i+1."""
    configs = []
    for i in range(1, agents + 1):
        cameras = [
            CameraConfig(
                id="cam1",
                source=str(SAMPLE_VIDEO),
                segment_id=f"ring-road-{i}",
                sample_hz=2.0,
                loop=True,
                roi=HIGHWAY_ROI,
            ),
            CameraConfig(
                id="cam2",
                source=str(SAMPLE_VIDEO),
                segment_id=f"ring-road-{i % agents + 1}",
                sample_hz=2.0,
                loop=True,
                roi=HIGHWAY_ROI,
            ),
        ]
        configs.append(
            EdgeConfig(
                device_id=f"demo-edge-{i}",
                mqtt=mqtt,
                reports=ReportConfig(window=4, interval_s=2.0),
                outbox=OutboxConfig(path=workdir / f"outbox-{i}.sqlite"),
                health_interval_s=5.0,
                # The devices measure: vehicles, stopped vehicles and occupancy in the zone.
                measure=MeasureConfig(enabled=True, intra_op_threads=1),
                cameras=cameras,
            )
        )
    return configs


@dataclass
class _Watch:
    """Counts WatchCityState updates in the background, as a dashboard would."""

    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...]
    updates: int = 0
    error: str | None = None
    _call: Any = field(default=None, repr=False)

    def start(self) -> None:
        stub = city_pb2_grpc.CityServiceStub(self.channel)
        self._call = stub.WatchCityState(city_pb2.WatchCityStateRequest(), metadata=self.metadata)
        threading.Thread(target=self._run, name="demo-watch", daemon=True).start()

    def _run(self) -> None:
        try:
            for _ in self._call:
                self.updates += 1
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.error = f"{err.code().name}: {err.details()}"

    def cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()


@dataclass
class _CityFeed:
    """Replays the SZ-taxi history up to now in the background, as a city feed would."""

    address: str
    token: str
    summary: ReplaySummary | None = None
    error: str | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="demo-feed", daemon=True).start()

    def _run(self) -> None:
        try:
            series = load_series(SZ_SPEEDS, weather_path=SZ_WEATHER)
            first = round(series.times[0].timestamp() * 1000)
            now = now_ms()
            shift = week_shift(first, now)
            history = sum(1 for t in series.times if t.timestamp() * 1000 + shift <= now)
            self.summary = replay(
                series,
                ReplayTarget(self.address, token=self.token),
                align="now",
                source="sz-taxi-replay",
                rows=range(history),
            )
        except Exception as err:
            self.error = str(err)


def _forecast_line(stub: city_pb2_grpc.CityServiceStub, credentials: Any) -> str:
    """One line about the forecasts of the replayed roads, for the live view."""
    try:
        response = stub.GetForecast(
            city_pb2.GetForecastRequest(horizons=[1, 4]),
            timeout=RPC_TIMEOUT_S,
            metadata=credentials,
        )
    except grpc.RpcError as err:
        return f"forecasts: not yet ({err.details()})"
    if not response.forecasts:
        return "forecasts: waiting for the city feed"
    fresh = [f for f in response.forecasts if not f.stale]
    minutes = response.interval_ms // 60_000
    mean = [sum(f.points[i].value for f in fresh) / max(len(fresh), 1) for i in (0, 1)]
    return (
        f"forecasts (model {response.model_version}): {len(response.forecasts)} SZ-taxi roads, "
        f"{len(fresh)} with fresh inputs; mean speed in {minutes} min {mean[0]:.1f}, "
        f"in {4 * minutes} min {mean[1]:.1f} km/h"
    )


def _table(state: city_pb2.CityState, elapsed: float, duration: float, caption: str = "") -> Table:
    table = Table(
        title=f"RoadSense demo — city congestion index {state.congestion_index:.1f}/10 — "
        f"devices online {state.devices_online} — {elapsed:.0f}/{duration:.0f} s",
        caption=caption,
    )
    columns = ("segment", "level 0-10", "label", "vehicles", "stopped", "occupancy", "cameras")
    for column in (*columns, "reports", "stale"):
        table.add_column(column)
    for s in state.segments:
        measured = s.measured_cameras > 0
        table.add_row(
            s.segment_id,
            f"{s.level:.1f}",
            s.label,
            f"{s.vehicles:.1f}" if measured else "",
            f"{s.stopped:.1f}" if measured else "",
            f"{s.occupancy:.2f}" if measured else "",
            ", ".join(s.camera_ids),
            str(s.reports),
            "yes" if s.stale else "",
        )
    return table


def _wait_for_ingest(cloud: CloudService, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    count = len(cloud.store.report_keys())
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        count = len(cloud.store.report_keys())
    return count


def run_demo(
    duration_s: float,
    agents: int = 2,
    as_json: bool = False,
    broker_choice: Literal["auto", "mosquitto", "embedded"] = "auto",
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the demo for ``duration_s`` seconds and return its figures."""
    console = console or Console()
    with tempfile.TemporaryDirectory(prefix="roadsense-demo-") as tmp:
        workdir = Path(tmp)
        broker = start_broker(workdir, broker_choice)
        try:
            return _run(
                duration_s=duration_s,
                agents=agents,
                as_json=as_json,
                broker=broker,
                workdir=workdir,
                console=console,
            )
        finally:
            broker.stop()


def _run(
    *,
    duration_s: float,
    agents: int,
    as_json: bool,
    broker: RunningBroker,
    workdir: Path,
    console: Console,
) -> dict[str, Any]:
    mqtt = MqttConfig(host=broker.host, port=broker.port, protocol=broker.protocol)
    token, digest = new_token()
    reader_token, reader_digest = new_token()
    auth = AuthConfig(
        tokens=[
            TokenConfig(name="demo", role="admin", sha256=digest),
            TokenConfig(name="demo-dashboard", role="reader", sha256=reader_digest),
        ]
    )
    credentials = (("authorization", f"Bearer {token}"),)
    cloud = CloudService(
        CloudConfig(
            mqtt=mqtt,
            ingest=IngestConfig(),
            grpc=GrpcConfig(host="127.0.0.1", port=0, auth=auth, drain_s=0),
            store=StoreConfig(path=workdir / "city.sqlite"),
            forecast=ForecastConfig(poll_s=2.0),
            dashboard=DashboardConfig(enabled=True, host="127.0.0.1", port=0),
        )
    )
    cloud.start()
    assert cloud.dashboard is not None
    dashboard_url = cloud.dashboard.url
    # Printed for whoever runs the demo; nothing is opened on their screen.
    console.print(
        f"dashboard: {dashboard_url} (log in with the reader token {reader_token})",
        soft_wrap=True,
    )
    feed = _CityFeed(cloud.address, token)
    edge: list[EdgeAgent] = []
    channel = open_channel(cloud.address)
    watch = _Watch(channel, credentials)
    try:
        cloud.ingest.wait_connected(10.0)
        watch.start()
        feed.start()
        for config in demo_edge_configs(agents, mqtt, workdir):
            agent = build_agent(config)
            agent.start()
            edge.append(agent)
        if not as_json:
            console.print(
                f"broker: {broker.kind} on {broker.host}:{broker.port}; "
                f"gRPC: {cloud.address}; {agents} edge agents on {SAMPLE_VIDEO.name}"
            )
        stub = city_pb2_grpc.CityServiceStub(channel)
        _show(stub, credentials, duration_s, None if as_json else console, _model_line(edge))
        for agent in edge:
            agent.stop_capture()
        flushed = all(agent.flush(timeout_s=15.0) for agent in edge)
        published = sum(agent.forwarder.acknowledged for agent in edge)
        ingested = _wait_for_ingest(cloud, published, timeout_s=15.0)
        state = stub.GetCityState(
            city_pb2.GetCityStateRequest(), timeout=RPC_TIMEOUT_S, metadata=credentials
        )
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT_S
        )
        keys = cloud.store.report_keys()
        result: dict[str, Any] = {
            "duration_s": duration_s,
            "broker": broker.kind,
            "edge_agents": agents,
            "frames_classified": sum(a.stats.frames_classified for a in edge),
            "classifier_calls": sum(a.stats.classifier_calls for a in edge),
            "reports_created": sum(a.stats.reports_created for a in edge),
            "reports_published": published,
            "reports_confirmed": sum(agent.forwarder.confirmed for agent in edge),
            "reports_ingested": ingested,
            "reports_stored_unique": len(set(keys)),
            "outboxes_empty": flushed,
            "duplicates_ignored": cloud.ingest.stats().duplicates,
            "dead_letters": len(cloud.store.dead_letters()),
            "segments": len(state.segments),
            "congestion_index": state.congestion_index,
            "devices_online": state.devices_online,
            "watch_updates": watch.updates,
            "grpc_ok": health.status == health_pb2.HealthCheckResponse.SERVING
            and len(state.segments) > 0
            and watch.error is None
            and watch.updates > 0,
            "model_placeholder": all(a.classifier.card.placeholder for a in edge),
            "measured_segments": sum(s.measured_cameras > 0 for s in state.segments),
            "vehicles_in_view": round(sum(s.vehicles for s in state.segments), 2),
            "stopped_in_view": round(sum(s.stopped for s in state.segments), 2),
            "dashboard_url": dashboard_url,
            **_feed_figures(cloud, feed, stub, credentials),
        }
        if not as_json:
            console.print(_table(state, duration_s, duration_s))
        return result
    finally:
        watch.cancel()
        for agent in edge:
            agent.stop()
        channel.close()
        cloud.stop()


def _model_line(edge: list[EdgeAgent]) -> str:
    measured = edge[0].measured
    if measured is not None:
        return (
            f"measured by detector {measured.detector.version}; levels by the rule "
            "occupancy-stopped/1 (docs/measurement.md)"
        )
    card = edge[0].classifier.card
    if card.placeholder:
        return f"CNN {card.name} {card.version}: PLACEHOLDER, levels are not measurements"
    return f"CNN {card.name} {card.version} (how it was trained and on what: its card)"


def _show(
    stub: city_pb2_grpc.CityServiceStub,
    credentials: Any,
    duration_s: float,
    console: Console | None,
    model_line: str = "",
) -> None:
    """Wait out the demo, showing the city live on ``console`` (None: just wait)."""
    started = time.monotonic()
    live = Live(console=console, refresh_per_second=4) if console else None
    if live:
        live.start()
    try:
        while (elapsed := time.monotonic() - started) < duration_s:
            if live:
                state = stub.GetCityState(
                    city_pb2.GetCityStateRequest(), timeout=RPC_TIMEOUT_S, metadata=credentials
                )
                caption = f"{model_line}\n{_forecast_line(stub, credentials)}"
                live.update(_table(state, elapsed, duration_s, caption))
            time.sleep(0.5)
    finally:
        if live:
            live.stop()


def _feed_figures(
    cloud: CloudService, feed: _CityFeed, stub: city_pb2_grpc.CityServiceStub, credentials: Any
) -> dict[str, Any]:
    """Figures of the city feed and of the forecasts served at the end."""
    figures: dict[str, Any] = {
        "feed_observations_accepted": feed.summary.accepted if feed.summary else 0,
        "feed_error": feed.error,
    }
    if cloud.forecasts is None:
        return figures
    cloud.forecasts.run_once()
    response = stub.GetForecast(
        city_pb2.GetForecastRequest(), timeout=RPC_TIMEOUT_S, metadata=credentials
    )
    return {
        **figures,
        "forecast_model": response.model_version,
        "forecast_segments": len(response.forecasts),
        "forecast_segments_stale": sum(f.stale for f in response.forecasts),
    }


def print_result(result: dict[str, Any], as_json: bool, console: Console) -> None:
    """The closing summary: a table, or one JSON line last."""
    if as_json:
        print(json.dumps(result, sort_keys=True))
        return
    for key, value in result.items():
        console.print(f"{key}: {value}")
