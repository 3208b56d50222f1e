"""The cloud service: store, city state, ingest and the gRPC API, started together.

One process runs every part (role ``all``, the default), or only some, for a city spread
over several machines: ``ingest`` workers share the MQTT shared subscription and write to
the store; ``api`` replicas answer gRPC and the dashboard from the store and follow the
changes any worker commits (``roadsense.cloud.city.changes``); ``forecast`` runs the forecast job
while it holds the forecast lock (``roadsense.cloud.leader``). Every role serves gRPC health,
NOT_SERVING while it cannot reach the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Literal, get_args

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from roadsense.cloud.api.auth import TokenAuthInterceptor
from roadsense.cloud.api.classify import ImageClassifier
from roadsense.cloud.api.measure import ImageMeasurer
from roadsense.cloud.api.rpc import CityServicer, add_city_service
from roadsense.cloud.city.changes import ChangeListener, DataVersionPoller
from roadsense.cloud.city.state import CityTracker
from roadsense.cloud.city.watch import ChangeFeed
from roadsense.cloud.config import CloudConfig, GrpcTlsConfig
from roadsense.cloud.dashboard.evidence import evidence_stills
from roadsense.cloud.dashboard.server import CityParts, DashboardServer
from roadsense.cloud.fleet.enrollment import FleetIdentity
from roadsense.cloud.fleet.rpc import FleetServicer
from roadsense.cloud.forecast.job import ForecastJob
from roadsense.cloud.ingest.subscriber import IngestWorker, NoIngest
from roadsense.cloud.leader import (
    ROLLOUT_LOCK_KEY,
    FileLeaderLock,
    LeaderLock,
    PostgresLeaderLock,
)
from roadsense.cloud.metrics import CloudMetrics, RpcTimingInterceptor
from roadsense.cloud.rollout.controller import RolloutController
from roadsense.cloud.rollout.wiring import build_controller
from roadsense.cloud.store.open import describe, open_store
from roadsense.cloud.store.sqlite import SqliteStore
from roadsense.core.errors import ConfigError, RoadSenseError
from roadsense.core.metrics import MetricsServer
from roadsense.core.signals import wait_for_stop_signal
from roadsense.core.timeutil import now_ms
from roadsense.proto.v1 import city_pb2, fleet_pb2, fleet_pb2_grpc

logger = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 300.0
Role = Literal["ingest", "api", "forecast", "all"]
ROLES: tuple[Role, ...] = get_args(Role)
SERVICE_NAMES = (
    city_pb2.DESCRIPTOR.services_by_name["CityService"].full_name,
    fleet_pb2.DESCRIPTOR.services_by_name["FleetService"].full_name,
)


def _both(
    first: Callable[[float], None], second: Callable[[float], None] | None
) -> Callable[[float], None]:
    if second is None:
        return first

    def observe(lag_s: float) -> None:
        first(lag_s)
        second(lag_s)

    return observe


def _server_credentials(tls: GrpcTlsConfig) -> grpc.ServerCredentials:
    try:
        key = tls.key_file.read_bytes()
        chain = tls.cert_file.read_bytes()
        client_ca = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    except OSError as err:
        raise ConfigError(f"gRPC TLS: cannot read {err.filename}: {err.strerror}") from err
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


class CloudService:
    """One cloud process: the parts of `roadsense cloud serve` its role runs."""

    def __init__(
        self,
        config: CloudConfig,
        lag_observer: Callable[[float], None] | None = None,
        role: Role = "all",
    ) -> None:
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if role == "forecast" and not config.forecast.enabled:
            raise ConfigError("role forecast runs the forecast job, but [forecast] enabled = false")
        self.config = config
        self.role = role
        serves_api = role in ("api", "all")
        history_interval_ms = int(config.state.history_interval_s * 1000)
        self.store = open_store(config.store, history_interval_ms)
        self._store_sources: dict[str, bool] = {}
        self._health_lock = threading.Lock()
        self._stopping = threading.Event()
        self.tracker = CityTracker(int(config.state.stale_after_s * 1000))
        if role != "forecast":
            self.tracker.load(
                self.store.segments(), self.store.latest_readings(self.tracker.stale_after_ms)
            )
        self.feed = ChangeFeed()
        self.metrics = CloudMetrics()
        self._ingest = (
            IngestWorker(
                config,
                self.store,
                self.tracker,
                self.feed,
                lag_observer=_both(self.metrics.capture_to_store_seconds.observe, lag_observer),
                store_state=self._store_state_of("ingest"),
                # Any process may share a server store; on SQLite, an ingest role does.
                shares_store=config.store.postgres_url is not None or role == "ingest",
            )
            if role in ("ingest", "all")
            else None
        )
        self.forecasts = (
            ForecastJob(
                config.forecast,
                self.store,
                leader=self._forecast_lock(),
                lead=role in ("forecast", "all"),
                on_store_state=self._store_state_of("forecast"),
            )
            if config.forecast.enabled and role != "ingest"
            else None
        )
        # Changes committed by other processes: NOTIFY on PostgreSQL, data_version on SQLite.
        self.changes: ChangeListener | DataVersionPoller | None = None
        if serves_api and config.store.postgres_url is not None:
            self.changes = ChangeListener(
                config.store.postgres_url,
                self.store,
                self.tracker,
                self.feed,
                on_store_state=self._store_state_of("changes"),
            )
        elif role == "api" and isinstance(self.store, SqliteStore):
            self.changes = DataVersionPoller(self.store, self.tracker, self.feed)
        classify = config.classify
        self.images = (
            ImageClassifier(
                classify.model, classify.max_image_bytes, classify.max_pixels, classify.threads
            )
            if classify.enabled and serves_api
            else None
        )
        self.measurer = (
            ImageMeasurer(
                classify.detector, classify.max_image_bytes, classify.max_pixels, classify.threads
            )
            if classify.enabled and classify.detector is not None and serves_api
            else None
        )
        self.metrics.watch(self._ingest, self.store, self.feed, self.forecasts)
        self._metrics_server: MetricsServer | None = None
        self.health = health.HealthServicer()
        if serves_api and not config.grpc.auth.tokens:
            logger.warning("gRPC API is open to anyone who can reach it: no tokens configured")
        self.server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=config.grpc.max_workers, thread_name_prefix="grpc"
            ),
            interceptors=[
                RpcTimingInterceptor(self.metrics.rpc_seconds),
                *([TokenAuthInterceptor(config.grpc.auth)] if config.grpc.auth.tokens else []),
            ],
            options=[
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
        )
        self._services = SERVICE_NAMES if serves_api else ()
        self.rollouts: RolloutController | None = None  # API roles: _add_api
        if serves_api:
            self._add_api(history_interval_ms)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*self._services, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        address = f"{config.grpc.host}:{config.grpc.port}"
        try:
            if config.grpc.tls is None:
                self.port = self.server.add_insecure_port(address)
            else:
                self.port = self.server.add_secure_port(
                    address, _server_credentials(config.grpc.tls)
                )
        except RuntimeError as err:
            raise RoadSenseError(f"cannot listen for gRPC on {address}: {err}") from err
        self.address = f"{config.grpc.host}:{self.port}"
        self.dashboard = (
            DashboardServer(
                config.dashboard,
                config.grpc.auth,
                CityParts(
                    tracker=self.tracker,
                    feed=self.feed,
                    store=self.store,
                    ingest=self._ingest or NoIngest(),
                    forecasts=self.forecasts,
                    city={s.id: s for s in config.segments},
                    evidence=evidence_stills(config, self.measurer),
                ),
            )
            if config.dashboard.enabled and serves_api
            else None
        )
        self._maintenance = threading.Thread(
            target=self._maintain, name="cloud-maintenance", daemon=True
        )

    @property
    def ingest(self) -> IngestWorker:
        """The ingest worker (roles ingest and all)."""
        if self._ingest is None:
            raise RoadSenseError(f"a cloud process of role {self.role!r} runs no ingest")
        return self._ingest

    def _forecast_lock(self) -> LeaderLock | None:
        """The lock a forecasting process must hold; None where it is the only one."""
        url = self.config.store.postgres_url
        if url is not None:
            return PostgresLeaderLock(url, timeout_s=self.config.store.timeout_s)
        if self.role == "forecast":  # beside an "all" or another "forecast" on one box
            path = self.config.store.path
            return FileLeaderLock(path.with_name(path.name + ".forecast-lock"))
        return None

    def _rollout_lock(self) -> LeaderLock | None:
        """The lock an API process must hold to move rollouts on; None where it is alone."""
        url = self.config.store.postgres_url
        if url is not None:
            return PostgresLeaderLock(
                url, key=ROLLOUT_LOCK_KEY, timeout_s=self.config.store.timeout_s
            )
        if self.role == "api":  # API replicas beside each other on one box
            path = self.config.store.path
            return FileLeaderLock(path.with_name(path.name + ".rollout-lock"))
        return None

    def _add_api(self, history_interval_ms: int) -> None:
        config = self.config
        add_city_service(
            CityServicer(
                self.tracker,
                self.feed,
                self.store,
                city={s.id: s for s in config.segments},
                history_interval_ms=history_interval_ms,
                max_future_ms=int(config.ingest.max_future_skew_s * 1000),
                forecasts=self.forecasts,
                images=self.images,
                measurer=self.measurer,
            ),
            self.server,
        )
        identity = (
            FleetIdentity(config.enrollment, self.store) if config.enrollment is not None else None
        )
        # Self-contained: a process that is not the fleet's leader can leave it unstarted.
        self.rollouts = build_controller(config, self.store, self._rollout_lock())
        fleet_pb2_grpc.add_FleetServiceServicer_to_server(
            FleetServicer(
                self.store,
                identity,
                frozenset(config.known_devices()),
                models=config.models,
                open_api=not config.grpc.auth.tokens,
                rollouts=self.rollouts,
                auth=config.grpc.auth,
            ),
            self.server,
        )

    def _store_state_of(self, source: str) -> Callable[[bool], None]:
        """Health follows the store: NOT_SERVING while any part (the ingest's writes, the
        change listener) cannot reach it."""

        def report(available: bool) -> None:
            with self._health_lock:
                self._store_sources[source] = available
            self._set_health()

        return report

    def _set_health(self) -> None:
        with self._health_lock:
            if self._stopping.is_set():
                return
            status = health_pb2.HealthCheckResponse.SERVING
            if not all(self._store_sources.values()):
                status = health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ("", *self._services):
                self.health.set(name, status)

    def _maintain(self) -> None:
        """Prune history and forecasts past retention, at start and then every few minutes."""
        retention_ms = int(self.config.state.history_retention_days * 86_400_000)
        while True:
            try:
                pruned = self.store.prune_history(now_ms() - retention_ms)
                if pruned:
                    logger.info("pruned %d history intervals past retention", pruned)
                pruned = self.store.prune_forecasts(now_ms() - retention_ms)
                if pruned:
                    logger.info("pruned %d forecasts past retention", pruned)
            except Exception as err:  # a store server away: try again next time
                logger.warning("pruning past retention failed: %s", err)
            if self._stopping.wait(MAINTENANCE_INTERVAL_S):
                return

    def start(self) -> None:
        """Start the parts of the role: API, ingest, change listener, forecast job."""
        self.server.start()
        self._set_health()
        if self._ingest is not None:
            self._ingest.start()
            self._maintenance.start()  # the writers prune
        if self.changes is not None:
            self.changes.start()
        if self.forecasts:
            self.forecasts.start()
        if self.rollouts:
            self.rollouts.start()
        if self.config.metrics.enabled:
            self._metrics_server = MetricsServer(
                self.config.metrics.host, self.config.metrics.port, self.metrics.registry
            )
        if self.dashboard:
            self.dashboard.start()
        logger.info(
            "cloud service (role %s): gRPC on %s, store %s",
            self.role,
            self.address,
            describe(self.config.store),
        )

    def stop(self) -> None:
        """Report NOT_SERVING, finish in-flight RPCs, drain the ingest, close the store."""
        self.health.enter_graceful_shutdown()
        self._stopping.set()
        if self.config.grpc.drain_s:
            time.sleep(self.config.grpc.drain_s)
        if self.dashboard:
            self.dashboard.stop()
        self.feed.close()
        self.server.stop(self.config.grpc.grace_s).wait()
        if self._ingest is not None:
            self._ingest.stop()
        if self.changes is not None:
            self.changes.stop()
        if self.rollouts:
            self.rollouts.stop()
        if self.forecasts:
            self.forecasts.stop()
        if self._metrics_server:
            self._metrics_server.stop()
        self.store.close()
        logger.info("cloud service stopped")


def serve(config: CloudConfig, role: Role = "all") -> None:
    """Run the cloud service (the parts of ``role``) until SIGTERM or SIGINT."""
    service = CloudService(config, role=role)
    service.start()
    wait_for_stop_signal()
    logger.info("shutting down")
    service.stop()
