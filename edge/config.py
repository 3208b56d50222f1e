"""Configuration of the edge agent (``roadsense edge run --config edge.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from roadsense.core.config import ConfigModel, relative_to
from roadsense.core.metrics import MetricsConfig
from roadsense.core.mqtt import MqttConfig, TlsConfig
from roadsense.core.roi import Roi, check_line, check_regions, check_roi, check_zone
from roadsense.edge.capture.config import AutoCaptureConfig, CaptureConfig
from roadsense.edge.measure.config import MeasureConfig, RuleConfig
from roadsense.proto.topics import is_identifier


def _identifier(value: str) -> str:
    if not is_identifier(value):
        raise ValueError(
            "must be 1-64 characters of letters, digits, '_', '.', '-', starting with a "
            "letter or digit"
        )
    return value


class CameraConfig(ConfigModel):
    """One camera watching one road segment."""

    id: str = Field(description="Camera id, unique on this device; part of the MQTT topic.")
    source: str = Field(
        description="Video file path, RTSP/HTTP URL, USB/V4L2 index (e.g. '0') or a "
        "GStreamer pipeline string."
    )
    classify_source: str | None = Field(
        default=None,
        description="A low-resolution substream of the same camera (URL or path) that "
        "the classifier reads instead; 'source' then serves snapshots only. Default: "
        "the classifier reads 'source'.",
    )
    capture: CaptureConfig = Field(
        default_factory=AutoCaptureConfig,
        description="How the stream is read and decoded: [cameras.capture] type = auto, "
        "opencv or pyav, with the reader's options.",
    )
    segment_id: str = Field(description="Road segment this camera watches.")
    sample_hz: float = Field(
        default=2.0, gt=0, le=60, description="Frames per second sent to the classifier."
    )
    roi: Roi | None = Field(
        default=None,
        description="Part of the frame the classifier sees, as fractions of the frame: "
        "x, y, width, height (e.g. the road, without sky and buildings). Default: all.",
    )
    blur: list[Roi] = Field(
        default_factory=list,
        description="Regions pixelated in every snapshot of this camera (windows, "
        "pavements, gardens), as fractions of the frame: [[x, y, width, height], ...].",
    )
    zone: list[tuple[float, float]] | None = Field(
        default=None,
        description="Road zone the measurement counts in: a polygon of 3 or more points "
        "(x, y as fractions of the frame). Default: the region of interest, else the whole "
        "frame. `roadsense measure CLIP --learn-zone` proposes one from the vehicles seen.",
    )
    counting_line: list[tuple[float, float]] | None = Field(
        default=None,
        description="Two points (fractions of the frame) of a line whose crossings are "
        "counted per vehicle class; counted only at sample_hz of 5 or more.",
    )
    rule: RuleConfig = Field(
        default_factory=RuleConfig,
        description="This camera's thresholds of the level rule (defaults: fitted on the "
        "training cameras).",
    )
    loop: bool = Field(default=False, description="Restart a video file at its end.")
    enabled: bool = Field(default=True, description="Capture and report this camera.")
    stall_timeout_s: float = Field(
        default=10.0, gt=0, description="No frame for this long means the stream stalled."
    )
    reconnect_min_s: float = Field(
        default=1.0, gt=0, description="First delay before reopening a failed stream."
    )
    reconnect_max_s: float = Field(
        default=60.0, gt=0, description="Longest delay between reopening attempts."
    )
    fail_after: int = Field(
        default=5,
        ge=1,
        description="Consecutive failed openings after which the camera is reported "
        "'failed' (it keeps retrying at the longest delay).",
    )

    _check_id = field_validator("id", "segment_id")(_identifier)
    _check_roi = field_validator("roi")(check_roi)
    _check_blur = field_validator("blur")(check_regions)

    _check_zone = field_validator("zone")(check_zone)
    _check_line = field_validator("counting_line")(check_line)

    def measuring_zone(self) -> list[tuple[float, float]] | None:
        """The zone the measurement counts in: the zone, else the ROI's rectangle."""
        if self.zone is not None:
            return self.zone
        if self.roi is None:
            return None
        x, y, w, h = self.roi
        return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


class ClassifierConfig(ConfigModel):
    """The congestion classifier backend and its model."""

    type: Literal["onnxruntime", "tensorrt", "auto"] = Field(
        default="onnxruntime",
        description="Backend: onnxruntime (CPU, or CUDA when its provider is installed), "
        "tensorrt (an engine built for this GPU), or auto (TensorRT where it loads, else "
        "ONNX Runtime; the log says which and why).",
    )
    model: Path | None = Field(
        default=None,
        description="ONNX model with its .card.json beside it; the shipped congestion CNN "
        "when absent.",
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime intra-op threads; 0 lets it choose."
    )
    uncertain_below: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="A frame whose top calibrated probability is below this floor is "
        "uncertain: it enters the report window as the uniform distribution (no level), so "
        "the cloud's confidence-weighted fusion discounts it; 0 turns this off.",
    )
    precision: Literal["fp32", "fp16", "int8"] = Field(
        default="fp16", description="TensorRT engine precision."
    )
    engine_dir: Path | None = Field(
        default=None,
        description="Where TensorRT engines are cached (default ~/.cache/roadsense/engines). "
        "An engine is reused only for the same model, TensorRT version, GPU, precision and "
        "batch range.",
    )
    build_engine: bool = Field(
        default=True,
        description="Build the TensorRT engine at start when the cache has none for this "
        "setup (minutes, once); false: refuse to start without a prebuilt engine.",
    )
    calibration_images: Path | None = Field(
        default=None, description="Folder of frames to calibrate an int8 engine with."
    )

    def backend_options(self) -> dict[str, object]:
        """What the backends read (each takes the keys it knows)."""
        return {
            "intra_op_threads": self.intra_op_threads,
            "precision": self.precision,
            "engine_dir": self.engine_dir,
            "build_engine": self.build_engine,
            "calibration_images": self.calibration_images,
        }


class ReportConfig(ConfigModel):
    """How classifications become congestion reports."""

    window: int = Field(
        default=6, ge=1, description="Classified frames averaged into one report (per camera)."
    )
    interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between reports of one camera."
    )
    on_level_change: bool = Field(
        default=True,
        description="Report at once when a camera's most probable class changes.",
    )
    change_confirm_frames: int = Field(
        default=3,
        ge=1,
        description="Classified frames in a row the new class must hold before a change "
        "is reported at once (hysteresis against flapping between two classes).",
    )


class OutboxConfig(ConfigModel):
    """The durable store-and-forward queue of reports."""

    path: Path = Field(default=Path("outbox.sqlite"), description="SQLite file of the outbox.")
    max_rows: int = Field(default=500_000, ge=1, description="Most reports kept unsent.")
    max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024, description="Most payload bytes kept."
    )
    max_age_s: float = Field(
        default=7 * 24 * 3600, gt=0, description="Unsent reports older than this are dropped."
    )
    max_inflight: int = Field(
        default=200,
        ge=1,
        le=1000,
        description="Most unacknowledged QoS 1 publishes at once (packet ids are 16-bit; "
        "docs/pitfalls.md #1).",
    )
    replay_rate_per_s: float = Field(
        default=50.0,
        gt=0,
        description="Most backlog reports replayed per second after a reconnection; new "
        "reports are sent first and are not limited.",
    )
    delivery: Literal["cloud", "broker"] = Field(
        default="cloud",
        description="When a report may leave the outbox: 'cloud' once the cloud confirms it "
        "committed it (DeliveryAck on roadsense/v1/<device>/ack; at least once end to end, "
        "even when the broker loses its state), 'broker' on the broker's PUBACK (for a "
        "subscriber that sends no confirmations; a broker crash can lose reports).",
    )
    confirm_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A report the broker acknowledged but the cloud has not confirmed within "
        "this time is published again (the cloud drops the repeat); the wait doubles with "
        "each further attempt and restarts from here after every reconnection.",
    )
    confirm_timeout_max_s: float = Field(
        default=600.0,
        gt=0,
        description="Longest wait between two publications of an unconfirmed report.",
    )

    @model_validator(mode="after")
    def _confirm_timeouts(self) -> OutboxConfig:
        if self.confirm_timeout_max_s < self.confirm_timeout_s:
            raise ValueError(
                f"confirm_timeout_max_s ({self.confirm_timeout_max_s:g}) is below "
                f"confirm_timeout_s ({self.confirm_timeout_s:g})"
            )
        return self


class PrivacyConfig(ConfigModel):
    """What may leave the device besides reports: by default, no image at all."""

    allow_snapshots: bool = Field(
        default=False,
        description="Answer the 'snapshot' command with a still of a camera (its blur "
        "regions pixelated). Off: frames never leave the device.",
    )
    snapshot_max_width: int = Field(
        default=640, ge=64, le=4096, description="Widest snapshot sent, in pixels."
    )
    jpeg_quality: int = Field(default=80, ge=10, le=100, description="JPEG quality of snapshots.")


class ModelUpdateConfig(ConfigModel):
    """How the device takes a new model from the cloud (the ``model`` command)."""

    public_key_file: Path | None = Field(
        default=None,
        description="The fleet's model-signing public key (PEM; model-signing.pub in the "
        "device bundle). Absent: every model update is refused.",
    )
    grpc_address: str | None = Field(
        default=None,
        description="The cloud's gRPC API (host:port) to download models from when the "
        "update names none.",
    )
    grpc_tls: TlsConfig | None = Field(
        default=None,
        description="TLS towards the cloud's gRPC API: its CA and this device's certificate "
        "and key (mutual TLS; CN = device id). Absent: the [mqtt.tls] files; with neither, "
        "plain TCP (a loopback demo; the signature still guards the model).",
    )
    folder: Path = Field(
        default=Path("model-releases"),
        description="Where downloaded models, the partial download and state.json (which "
        "version is current, which previous) are kept.",
    )
    latency_factor: float = Field(
        default=2.0,
        ge=1.0,
        le=100.0,
        description="Self-test: the new model's p95 inference latency on recent frames may "
        "be at most this many times the running model's, measured side by side.",
    )
    self_test_frames: int = Field(
        default=8, ge=1, le=64, description="Recent camera frames the self-test runs on."
    )
    self_test_rounds: int = Field(
        default=20,
        ge=1,
        le=100,
        description="Times each model classifies the self-test frames for the latency check.",
    )
    frames_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for recent frames before a self-test (just after a start).",
    )
    min_free_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Free disk space a download must leave on the models folder's disk "
        "(the outbox lives there too); an update that would leave less is refused.",
    )

    @field_validator("grpc_address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is not None:
            check_grpc_address(value)
        return value


def check_grpc_address(value: str) -> str:
    """``host:port`` with a port in 1..65535; ValueError saying what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value[:100]!r} is not host:port (e.g. cloud.example.org:50051)")
    return value


class EdgeConfig(ConfigModel):
    """Everything one roadside device runs with."""

    device_id: str = Field(description="Device id: MQTT client id, username and topic level.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection.")
    classifier: ClassifierConfig = Field(
        default_factory=ClassifierConfig, description="Congestion classifier."
    )
    measure: MeasureConfig = Field(
        default_factory=MeasureConfig, description="Vehicle measurement (the detector)."
    )
    reports: ReportConfig = Field(default_factory=ReportConfig, description="Report cadence.")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Durable outbox.")
    health_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between health messages."
    )
    shutdown_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="On SIGTERM, how long to keep publishing stored reports before exiting.",
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Prometheus metrics endpoint."
    )
    privacy: PrivacyConfig = Field(
        default_factory=PrivacyConfig, description="Snapshots and what they blur."
    )
    models: ModelUpdateConfig = Field(
        default_factory=ModelUpdateConfig,
        description="Model updates from the cloud: signing key, download, self-test.",
    )
    cameras: list[CameraConfig] = Field(min_length=1, description="Cameras of this device.")

    _check_device = field_validator("device_id")(_identifier)

    @model_validator(mode="after")
    def _unique_cameras(self) -> EdgeConfig:
        ids = [c.id for c in self.cameras]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate camera ids: {', '.join(duplicates)}")
        return self

    def resolved(self, base: Path) -> EdgeConfig:
        """Copy with relative file paths made relative to ``base`` (the config's folder)."""

        def rel(path: Path | None) -> Path | None:
            return relative_to(base, path)

        def source(value: str | None) -> str | None:
            return str(base / value) if value and _is_relative_file(value) else value

        cameras = [
            c.model_copy(
                update={"source": source(c.source), "classify_source": source(c.classify_source)}
            )
            for c in self.cameras
        ]
        return self.model_copy(
            update={
                "cameras": cameras,
                "classifier": self.classifier.model_copy(
                    update={
                        "model": rel(self.classifier.model),
                        "engine_dir": rel(self.classifier.engine_dir),
                        "calibration_images": rel(self.classifier.calibration_images),
                    }
                ),
                "measure": self.measure.model_copy(update={"model": rel(self.measure.model)}),
                "outbox": self.outbox.model_copy(update={"path": rel(self.outbox.path)}),
                "mqtt": self.mqtt.resolved(base),
                "models": self.models.model_copy(
                    update={
                        "public_key_file": rel(self.models.public_key_file),
                        "folder": relative_to(base, self.models.folder),
                        "grpc_tls": (
                            self.models.grpc_tls.resolved(base) if self.models.grpc_tls else None
                        ),
                    }
                ),
            }
        )


def _is_relative_file(source: str) -> bool:
    if source.isdigit() or "://" in source or "!" in source:
        return False
    return not Path(source).is_absolute()
