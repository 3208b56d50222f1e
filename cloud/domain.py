"""What the cloud works with once a message has been decoded and checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from roadsense.proto.model_kinds import CONGESTION

LEVELS = ("free", "light", "moderate", "heavy", "jammed")
"""The levels a camera's rule names, from free flow to jammed."""
VEHICLE_CLASSES = ("car", "motorcycle", "bus", "truck")
"""The vehicle classes a device measures (and never a person)."""


@dataclass(frozen=True)
class ClassFigures:
    """One vehicle class in one camera's report window."""

    vehicle_class: str
    mean_in_view: float
    max_in_view: int
    crossings: int


@dataclass(frozen=True)
class Measured:
    """What a camera measured in its road zone over one report window."""

    samples: int
    vehicles_mean: float
    vehicles_max: int
    stopped_mean: float
    stopped_max: int
    occupancy: float
    level: str
    rule: str
    confidence: float
    tracks: int = 0
    crossings_counted: bool = False
    speed: float = 0.0
    speed_unit: str = ""
    classes: tuple[ClassFigures, ...] = ()
    detector_version: str = ""


@dataclass(frozen=True)
class Reading:
    """One accepted congestion report."""

    device_id: str
    camera_id: str
    segment_id: str
    seq: int
    capture_time_ms: int
    window_start_ms: int
    received_ms: int
    model_version: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    frames_in_window: int
    level: float
    measured: Measured | None = None
    """The camera's measurements (reports of schema version 2 on)."""

    @property
    def label(self) -> str:
        """The most probable class."""
        best = max(range(len(self.probabilities)), key=self.probabilities.__getitem__)
        return self.labels[best]


@dataclass(frozen=True)
class StatusUpdate:
    """A device's birth (online) or last will (offline)."""

    device_id: str
    online: bool
    time_ms: int
    received_ms: int
    agent_version: str
    model_version: str
    camera_ids: tuple[str, ...]


@dataclass(frozen=True)
class HealthRecord:
    """A device's health message, kept as JSON."""

    device_id: str
    time_ms: int
    received_ms: int
    body_json: str


@dataclass(frozen=True)
class Rejected:
    """A message that failed validation; it goes to the dead-letter table."""

    topic: str
    reason: str
    payload: bytes
    received_ms: int
    code: str = "invalid"
    """Kind of problem (bad_topic, bad_protobuf, device_mismatch, future, ...), for metrics."""


@dataclass(frozen=True)
class SegmentSnapshot:
    """Fused state of one road segment."""

    segment_id: str
    level: float
    label: str
    updated_ms: int
    last_changed_ms: int
    camera_ids: tuple[str, ...]
    stale: bool
    reports: int
    vehicles: float = 0.0
    """Vehicles in view, summed over the fresh cameras that measure (each watches its own
    lanes): the mean of each camera's last report window."""
    stopped: float = 0.0
    """Of them stopped, summed the same way."""
    occupancy: float = 0.0
    """Mean share of the road zones covered by vehicles, over the measuring cameras."""
    measured_cameras: int = 0
    """Fresh cameras whose reports carry measurements."""


@dataclass(frozen=True)
class DeviceRecord:
    """What the registry knows about a device."""

    device_id: str
    online: bool
    last_seen_ms: int
    agent_version: str
    model_version: str
    camera_ids: tuple[str, ...]


@dataclass(frozen=True)
class RegistryEntry:
    """A device's identity state: enrolled by claim, or revoked."""

    device_id: str
    enrolled_ms: int
    revoked_ms: int | None
    certificate_serial: str
    revoke_reason: str


@dataclass(frozen=True)
class TokenUse:
    """The outcome of presenting an enrollment token."""

    outcome: Literal["ok", "unknown", "expired", "used_up"]
    device_id: str | None = None
    """The device the token is bound to (None: any device of the manifest)."""


@dataclass(frozen=True)
class PublishedModel:
    """One release in the model registry: what devices fetch and verify."""

    version: str
    name: str
    onnx_file: str
    """File name of the ONNX in the release's registry folder (its card beside it)."""
    size: int
    sha256: str
    card_sha256: str
    signature: bytes
    """The fleet key's Ed25519 signature of (sha256, size, version, card sha256)."""
    published_ms: int
    published_by: str
    kind: str = CONGESTION
    """Which of a device's models it is (``roadsense.proto.model_kinds``), from its card."""


Telemetry = Reading | StatusUpdate | HealthRecord | Rejected


@dataclass(frozen=True)
class SegmentForecast:
    """A segment's forecasts from one input window, for horizons 1..H."""

    segment_id: str
    origin_ms: int
    """Start of the newest input interval."""
    interval_ms: int
    values: tuple[float, ...]
    """Per horizon 1..H: the value given that an observation arrives."""
    observed_probability: tuple[float, ...]
    """Per horizon 1..H: probability that the interval has an observation."""
    model_version: str
    newest_input_ms: int
    """Newest observation in the input window (0: none)."""
    missing_fraction: float
    made_ms: int

    def target_ms(self, horizon: int) -> int:
        """Start of the interval ``horizon`` steps after the origin."""
        return self.origin_ms + horizon * self.interval_ms

    def is_stale(self, now_ms: int, stale_after_ms: int) -> bool:
        """No input at all, or the newest one older than the limit."""
        return not self.newest_input_ms or now_ms - self.newest_input_ms > stale_after_ms


@dataclass(frozen=True)
class HorizonScore:
    """Online mean absolute error of one horizon's scored forecasts."""

    horizon: int
    mae: float
    scored: int
