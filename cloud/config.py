"""Configuration of the cloud service (``roadsense cloud serve --config cloud.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from roadsense.cloud.api.auth import AuthConfig
from roadsense.cloud.city.segments import DeviceConfig, SegmentConfig
from roadsense.cloud.ingest.decode import DEFAULT_MAX_LATE_MS
from roadsense.cloud.rollout.config import RolloutConfig
from roadsense.core.config import ConfigModel, relative_to
from roadsense.core.metrics import MetricsConfig
from roadsense.core.mqtt import MqttConfig
from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR, DEFAULT_FORECASTER


class IngestConfig(ConfigModel):
    """How telemetry is taken from the broker."""

    client_id: str = Field(
        default="roadsense-cloud-1",
        description="MQTT client id of this worker; unique per worker, stable across restarts "
        "so the broker keeps its session. A fleet broker (provision broker-config) uses the "
        "certificate's CN instead: give each worker its own certificate and account.",
    )
    username: str | None = Field(default=None, description="MQTT username of the cloud ingest.")
    shared_group: str = Field(
        default="",
        description="MQTT 5 shared-subscription group: workers in one group split the load. "
        "Empty (the default) subscribes plainly: Mosquitto 2.0 does not queue for an offline "
        "shared subscriber after a broker restart, so one worker on Mosquitto should not "
        "share; several workers need a broker that does (e.g. EMQX).",
    )
    max_future_skew_s: float = Field(
        default=30.0,
        ge=0,
        description="Reports timed further than this in the future are rejected.",
    )
    max_late_s: float = Field(
        default=DEFAULT_MAX_LATE_MS / 1000,
        gt=0,
        description="Reports captured longer ago than this (capture time or window start) "
        "are dead-lettered (too_late). Later ones are kept for history; a report becomes "
        "current state only when it arrives within [state] stale_after_s of its capture. "
        "Keep it at or above the edge outbox's max_age_s (7 days by default) so a device's "
        "backlog is never refused; the default is 14 days.",
    )
    queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Most messages waiting for the writer; when full, the MQTT thread waits "
        "(back-pressure reaches the broker, which queues).",
    )
    batch_size: int = Field(default=500, ge=1, description="Most messages per write transaction.")
    max_payload_bytes: int = Field(
        default=64 * 1024,
        ge=256,
        description="Larger messages are dead-lettered (only their first KiB is kept).",
    )


class GrpcTlsConfig(ConfigModel):
    """TLS for the gRPC API, optionally mutual."""

    cert_file: Path = Field(description="Server certificate chain (PEM).")
    key_file: Path = Field(description="Server private key (PEM).")
    client_ca_file: Path | None = Field(
        default=None,
        description="CA (PEM) whose client certificates are required (mutual TLS); absent: "
        "clients need no certificate.",
    )


class GrpcConfig(ConfigModel):
    """Where the gRPC API listens."""

    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(
        default=50051, ge=0, le=65535, description="Port to bind; 0 picks a free one."
    )
    max_workers: int = Field(
        default=16, ge=2, description="Threads serving RPCs; each open watch stream holds one."
    )
    grace_s: float = Field(
        default=5.0, ge=0, description="Seconds in-flight RPCs get to finish on shutdown."
    )
    drain_s: float = Field(
        default=2.0,
        ge=0,
        description="On shutdown, seconds the health check answers NOT_SERVING while still "
        "serving, so load balancers move clients away before the port closes.",
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="Client tokens and roles.")
    tls: GrpcTlsConfig | None = Field(
        default=None, description="TLS settings; plaintext (loopback only!) when absent."
    )


SQLITE_URL = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StoreConfig(ConfigModel):
    """The city store: a SQLite file (the default) or a PostgreSQL database."""

    path: Path = Field(
        default=Path("city.sqlite"),
        description="SQLite file of the city store, when url names no PostgreSQL database.",
    )
    url: str | None = Field(
        default=None,
        description='The store as a URL instead of path: "postgresql://user@host:5432/db" '
        "(PostgreSQL, shared by several cloud processes; any libpq URL, the password best "
        'from PGPASSWORD or ~/.pgpass) or "sqlite:///city.sqlite" (a SQLite file, the same '
        'as path; "sqlite:////abs/city.sqlite" for an absolute one).',
    )
    pool_size: int = Field(
        default=8, ge=1, description="Connections the PostgreSQL store keeps open at most."
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long the PostgreSQL store waits to connect, or for a free "
        "connection, before the operation fails (the ingest then retries).",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_store(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("url") is None:
            return data
        if "path" in data:
            raise ValueError("[store] takes url or path, not both")
        url = str(data["url"])
        if url.startswith(SQLITE_URL) and len(url) > len(SQLITE_URL):
            # A SQLite URL is only another way to write path.
            return {**{k: v for k, v in data.items() if k != "url"}, "path": url[len(SQLITE_URL) :]}
        if not url.startswith(POSTGRES_SCHEMES):
            raise ValueError(
                f"[store] url must be postgresql://... or sqlite:///FILE, not {url[:60]!r}"
            )
        return data

    @property
    def postgres_url(self) -> str | None:
        """The PostgreSQL database's URL; None: the store is the SQLite file at ``path``."""
        return self.url


class StateConfig(ConfigModel):
    """How segment state is derived from reports."""

    stale_after_s: float = Field(
        default=120.0, gt=0, description="A segment with no report for this long is stale."
    )
    history_interval_s: float = Field(
        default=60.0, gt=0, description="Length of one history interval (charts, forecasts)."
    )
    history_retention_days: float = Field(
        default=90.0, gt=0, description="History older than this is deleted."
    )


class ForecastConfig(ConfigModel):
    """The traffic-flow forecaster the cloud runs over city feeds."""

    enabled: bool = Field(default=True, description="Run the forecast job and answer GetForecast.")
    model: Path = Field(
        default=DEFAULT_FORECASTER,
        description="Forecaster ONNX file; its card (same name, .card.json) must sit beside "
        "it. Replacing both is picked up without a restart. Default: the shipped model "
        "trained on the SZ-taxi subset.",
    )
    every_s: float | None = Field(
        default=None,
        gt=0,
        description="Forecast again at least this often even when no new interval has "
        "completed (late data); default: the model's interval.",
    )
    poll_s: float = Field(
        default=10.0,
        gt=0,
        description="How often the job looks for a completed interval or a new model.",
    )
    stale_after_s: float = Field(
        default=1800.0,
        gt=0,
        description="A forecast whose newest input is older than this is flagged stale.",
    )
    threads: int = Field(default=1, ge=1, description="ONNX Runtime threads of the job.")
    lock_poll_s: float = Field(
        default=5.0,
        gt=0,
        description="With several processes that may forecast (roles forecast and all), only "
        "the holder of the forecast lock runs the job; the others try to take the lock this "
        "often, so a dead holder is replaced within about this long.",
    )


class ClassifyConfig(ConfigModel):
    """CityService.ClassifyImage: the congestion CNN for cameras without an edge box."""

    enabled: bool = Field(default=True, description="Answer ClassifyImage.")
    model: Path = Field(
        default=DEFAULT_CNN,
        description="Congestion ONNX with its card beside it; default: the shipped model.",
    )
    max_image_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Largest JPEG/PNG accepted, in bytes."
    )
    max_pixels: int = Field(
        default=4096 * 4096, gt=0, description="Largest image accepted, in pixels."
    )
    threads: int = Field(default=1, ge=1, description="ONNX Runtime threads.")
    detector: Path | None = Field(
        default=DEFAULT_DETECTOR,
        description="Vehicle detector ONNX (card beside it) that answers MeasureImage; "
        "empty: MeasureImage is off.",
    )


class EnrollmentConfig(ConfigModel):
    """Enrollment by claim and revocation: the cloud signs device CSRs with the fleet CA."""

    fleet_dir: Path = Field(
        description="Fleet folder made by `roadsense provision init-ca` (ca/ca.pem, ca/ca.key, "
        "ca/crl.pem); RevokeDevice rewrites its CRL."
    )
    manifest: Path = Field(description="Fleet manifest (TOML): devices and their cameras.")
    passphrase_file: Path | None = Field(
        default=None,
        description="File with the CA key's passphrase; absent: env ROADSENSE_CA_PASSPHRASE.",
    )
    certificate_days: int = Field(
        default=365, ge=1, le=3650, description="Validity of certificates issued by enrollment."
    )


class ModelRegistryConfig(ConfigModel):
    """The model registry: releases `roadsense models publish` stores, devices download."""

    registry_dir: Path = Field(
        default=Path("model-registry"),
        description="Folder of published models, one sub-folder per version (the ONNX and "
        "its card); the store keeps the signed record of each.",
    )
    chunk_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=2 * 1024 * 1024,
        description="Bytes per message of FleetService.DownloadModel's stream.",
    )


class DashboardConfig(ConfigModel):
    """The operator dashboard: a read-only web page of the live city."""

    enabled: bool = Field(
        default=False, description="Serve the dashboard (HTTP, behind the gRPC API's tokens)."
    )
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(
        default=8080, ge=0, le=65535, description="HTTP port to bind; 0 picks a free one."
    )
    session_hours: float = Field(
        default=12.0, gt=0, description="How long a login lasts (an HttpOnly session cookie)."
    )
    history_hours: float = Field(
        default=3.0, gt=0, description="How far back the charts and the city index reach."
    )
    evidence: bool = Field(
        default=False,
        description="Offer each measuring camera's evidence still in the segment panel: the "
        "dashboard asks the device for a snapshot (refused unless the device's [privacy] "
        "allows snapshots; its privacy regions come pixelated) and draws the vehicles that "
        "[classify] detector finds in the camera's region of interest.",
    )
    evidence_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="How long to wait for a device's still."
    )
    cert_file: Path | None = Field(
        default=None,
        description="Client certificate of the dashboard's own broker account, for evidence "
        "stills; needed when [mqtt.tls] uses a client certificate (the ingest's would "
        "displace the ingest).",
    )
    key_file: Path | None = Field(default=None, description="Private key of cert_file.")

    @model_validator(mode="after")
    def _account(self) -> DashboardConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file, or neither")
        return self


class CloudConfig(ConfigModel):
    """Everything the cloud service runs with."""

    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Telemetry ingest.")
    grpc: GrpcConfig = Field(default_factory=GrpcConfig, description="gRPC API.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="City store.")
    state: StateConfig = Field(default_factory=StateConfig, description="Segment state.")
    metrics: MetricsConfig = Field(
        default_factory=lambda: MetricsConfig(port=9109), description="Prometheus endpoint."
    )
    forecast: ForecastConfig = Field(
        default_factory=ForecastConfig, description="Traffic-flow forecasting."
    )
    dashboard: DashboardConfig = Field(
        default_factory=DashboardConfig, description="Operator dashboard (web page)."
    )
    classify: ClassifyConfig = Field(
        default_factory=ClassifyConfig, description="Image classification (ClassifyImage)."
    )
    devices: list[DeviceConfig] = Field(
        default_factory=list,
        description="Fleet registry ([[devices]]). When not empty, telemetry from any other "
        "device or camera is dead-lettered.",
    )
    segments: list[SegmentConfig] = Field(
        default_factory=list, description="The city's road segments ([[segments]] tables)."
    )
    models: ModelRegistryConfig = Field(
        default_factory=ModelRegistryConfig,
        description="Model registry (models publish, FleetService.DownloadModel).",
    )
    rollout: RolloutConfig = Field(
        default_factory=RolloutConfig, description="Model rollouts (fleet rollout ...)."
    )
    enrollment: EnrollmentConfig | None = Field(
        default=None,
        description="Enrollment by claim (FleetService.Enroll) and CRL updates on revocation; "
        "absent: Enroll is refused and revocation only marks the registry.",
    )

    @model_validator(mode="after")
    def _unique_segments(self) -> CloudConfig:
        ids = [s.id for s in self.segments]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate segment ids: {', '.join(duplicates)}")
        mapped = [c for s in self.segments for c in s.cameras]
        twice = sorted({c for c in mapped if mapped.count(c) > 1})
        if twice:
            raise ValueError(f"cameras mapped to more than one segment: {', '.join(twice)}")
        return self

    def known_devices(self) -> dict[str, frozenset[str]]:
        """The fleet registry: device id → camera ids (empty: no registry)."""
        return {d.id: frozenset(d.cameras) for d in self.devices}

    def camera_segments(self) -> dict[str, str]:
        """The city's camera → segment mapping ("device/camera" → segment id)."""
        return {camera: s.id for s in self.segments for camera in s.cameras}

    def resolved(self, base: Path) -> CloudConfig:
        """Copy with relative file paths made relative to ``base`` (the config's folder)."""

        def rel(path: Path | None) -> Path | None:
            return relative_to(base, path)

        tls = self.grpc.tls
        if tls is not None:
            tls = tls.model_copy(
                update={
                    "cert_file": rel(tls.cert_file),
                    "key_file": rel(tls.key_file),
                    "client_ca_file": rel(tls.client_ca_file),
                }
            )
        enrollment = self.enrollment
        if enrollment is not None:
            enrollment = enrollment.model_copy(
                update={
                    "fleet_dir": rel(enrollment.fleet_dir),
                    "manifest": rel(enrollment.manifest),
                    "passphrase_file": rel(enrollment.passphrase_file),
                }
            )
        rollout = self.rollout.model_copy(
            update={
                "cert_file": rel(self.rollout.cert_file),
                "key_file": rel(self.rollout.key_file),
            }
        )
        return self.model_copy(
            update={
                "enrollment": enrollment,
                "rollout": rollout,
                "models": self.models.model_copy(
                    update={"registry_dir": rel(self.models.registry_dir)}
                ),
                "mqtt": self.mqtt.resolved(base),
                "store": self.store.model_copy(update={"path": rel(self.store.path)}),
                "grpc": self.grpc.model_copy(update={"tls": tls}),
                "forecast": self.forecast.model_copy(update={"model": rel(self.forecast.model)}),
                "classify": self.classify.model_copy(
                    update={
                        "model": rel(self.classify.model),
                        "detector": rel(self.classify.detector),
                    }
                ),
                "dashboard": self.dashboard.model_copy(
                    update={
                        "cert_file": rel(self.dashboard.cert_file),
                        "key_file": rel(self.dashboard.key_file),
                    }
                ),
            }
        )
