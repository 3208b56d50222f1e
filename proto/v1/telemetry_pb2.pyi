from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CongestionReport(_message.Message):
    __slots__ = ("schema_version", "device_id", "camera_id", "segment_id", "seq", "capture_time_ms", "window_start_ms", "model_version", "labels", "probabilities", "frames_in_window", "measurements")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_IN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    device_id: str
    camera_id: str
    segment_id: str
    seq: int
    capture_time_ms: int
    window_start_ms: int
    model_version: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    frames_in_window: int
    measurements: Measurements
    def __init__(self, schema_version: _Optional[int] = ..., device_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., segment_id: _Optional[str] = ..., seq: _Optional[int] = ..., capture_time_ms: _Optional[int] = ..., window_start_ms: _Optional[int] = ..., model_version: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., probabilities: _Optional[_Iterable[float]] = ..., frames_in_window: _Optional[int] = ..., measurements: _Optional[_Union[Measurements, _Mapping]] = ...) -> None: ...

class Measurements(_message.Message):
    __slots__ = ("samples", "vehicles_mean", "vehicles_max", "stopped_mean", "stopped_max", "occupancy", "classes", "crossings_counted", "speed", "speed_unit", "level", "rule", "confidence", "tracks", "detector_version")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    VEHICLES_MEAN_FIELD_NUMBER: _ClassVar[int]
    VEHICLES_MAX_FIELD_NUMBER: _ClassVar[int]
    STOPPED_MEAN_FIELD_NUMBER: _ClassVar[int]
    STOPPED_MAX_FIELD_NUMBER: _ClassVar[int]
    OCCUPANCY_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    CROSSINGS_COUNTED_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    SPEED_UNIT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    samples: int
    vehicles_mean: float
    vehicles_max: int
    stopped_mean: float
    stopped_max: int
    occupancy: float
    classes: _containers.RepeatedCompositeFieldContainer[ClassMeasurement]
    crossings_counted: bool
    speed: float
    speed_unit: str
    level: str
    rule: str
    confidence: float
    tracks: int
    detector_version: str
    def __init__(self, samples: _Optional[int] = ..., vehicles_mean: _Optional[float] = ..., vehicles_max: _Optional[int] = ..., stopped_mean: _Optional[float] = ..., stopped_max: _Optional[int] = ..., occupancy: _Optional[float] = ..., classes: _Optional[_Iterable[_Union[ClassMeasurement, _Mapping]]] = ..., crossings_counted: _Optional[bool] = ..., speed: _Optional[float] = ..., speed_unit: _Optional[str] = ..., level: _Optional[str] = ..., rule: _Optional[str] = ..., confidence: _Optional[float] = ..., tracks: _Optional[int] = ..., detector_version: _Optional[str] = ...) -> None: ...

class ClassMeasurement(_message.Message):
    __slots__ = ("vehicle_class", "mean_in_view", "max_in_view", "crossings")
    VEHICLE_CLASS_FIELD_NUMBER: _ClassVar[int]
    MEAN_IN_VIEW_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_VIEW_FIELD_NUMBER: _ClassVar[int]
    CROSSINGS_FIELD_NUMBER: _ClassVar[int]
    vehicle_class: str
    mean_in_view: float
    max_in_view: int
    crossings: int
    def __init__(self, vehicle_class: _Optional[str] = ..., mean_in_view: _Optional[float] = ..., max_in_view: _Optional[int] = ..., crossings: _Optional[int] = ...) -> None: ...

class DeviceStatus(_message.Message):
    __slots__ = ("schema_version", "device_id", "state", "time_ms", "agent_version", "model_version", "camera_ids")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[DeviceStatus.State]
        ONLINE: _ClassVar[DeviceStatus.State]
        OFFLINE: _ClassVar[DeviceStatus.State]
    STATE_UNSPECIFIED: DeviceStatus.State
    ONLINE: DeviceStatus.State
    OFFLINE: DeviceStatus.State
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    device_id: str
    state: DeviceStatus.State
    time_ms: int
    agent_version: str
    model_version: str
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, schema_version: _Optional[int] = ..., device_id: _Optional[str] = ..., state: _Optional[_Union[DeviceStatus.State, str]] = ..., time_ms: _Optional[int] = ..., agent_version: _Optional[str] = ..., model_version: _Optional[str] = ..., camera_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CameraHealth(_message.Message):
    __slots__ = ("camera_id", "state", "frames_captured", "last_frame_ms", "fps", "sample_hz", "reconnects", "problem", "frames_used", "decode_mode", "keyframe_hz", "effective_sample_hz", "stream_fps", "width", "height", "snapshot_state")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_CAPTURED_FIELD_NUMBER: _ClassVar[int]
    LAST_FRAME_MS_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_HZ_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    FRAMES_USED_FIELD_NUMBER: _ClassVar[int]
    DECODE_MODE_FIELD_NUMBER: _ClassVar[int]
    KEYFRAME_HZ_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SAMPLE_HZ_FIELD_NUMBER: _ClassVar[int]
    STREAM_FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_STATE_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    state: str
    frames_captured: int
    last_frame_ms: int
    fps: float
    sample_hz: float
    reconnects: int
    problem: str
    frames_used: int
    decode_mode: str
    keyframe_hz: float
    effective_sample_hz: float
    stream_fps: float
    width: int
    height: int
    snapshot_state: str
    def __init__(self, camera_id: _Optional[str] = ..., state: _Optional[str] = ..., frames_captured: _Optional[int] = ..., last_frame_ms: _Optional[int] = ..., fps: _Optional[float] = ..., sample_hz: _Optional[float] = ..., reconnects: _Optional[int] = ..., problem: _Optional[str] = ..., frames_used: _Optional[int] = ..., decode_mode: _Optional[str] = ..., keyframe_hz: _Optional[float] = ..., effective_sample_hz: _Optional[float] = ..., stream_fps: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., snapshot_state: _Optional[str] = ...) -> None: ...

class DeviceHealth(_message.Message):
    __slots__ = ("schema_version", "device_id", "time_ms", "uptime_s", "cameras", "frames_classified", "reports_created", "reports_acknowledged", "outbox_pending", "outbox_dropped", "backend", "inference_p50_ms", "inference_p95_ms", "mean_batch_size", "outbox_bytes", "outbox_oldest_age_s", "temperatures_c", "model_version", "outbox_state", "reports_lost", "snapshots_sent", "reports_confirmed", "outbox_awaiting_cloud", "process_cpu_share", "cpu_count", "frames_uncertain", "previous_model_version", "model_update_error", "detector_version", "previous_detector_version")
    class TemperaturesCEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_CLASSIFIED_FIELD_NUMBER: _ClassVar[int]
    REPORTS_CREATED_FIELD_NUMBER: _ClassVar[int]
    REPORTS_ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_PENDING_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_DROPPED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_P50_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_P95_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_OLDEST_AGE_S_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURES_C_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_STATE_FIELD_NUMBER: _ClassVar[int]
    REPORTS_LOST_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_SENT_FIELD_NUMBER: _ClassVar[int]
    REPORTS_CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_AWAITING_CLOUD_FIELD_NUMBER: _ClassVar[int]
    PROCESS_CPU_SHARE_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    FRAMES_UNCERTAIN_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_UPDATE_ERROR_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_DETECTOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    device_id: str
    time_ms: int
    uptime_s: float
    cameras: _containers.RepeatedCompositeFieldContainer[CameraHealth]
    frames_classified: int
    reports_created: int
    reports_acknowledged: int
    outbox_pending: int
    outbox_dropped: int
    backend: str
    inference_p50_ms: float
    inference_p95_ms: float
    mean_batch_size: float
    outbox_bytes: int
    outbox_oldest_age_s: float
    temperatures_c: _containers.ScalarMap[str, float]
    model_version: str
    outbox_state: str
    reports_lost: int
    snapshots_sent: int
    reports_confirmed: int
    outbox_awaiting_cloud: int
    process_cpu_share: float
    cpu_count: int
    frames_uncertain: int
    previous_model_version: str
    model_update_error: str
    detector_version: str
    previous_detector_version: str
    def __init__(self, schema_version: _Optional[int] = ..., device_id: _Optional[str] = ..., time_ms: _Optional[int] = ..., uptime_s: _Optional[float] = ..., cameras: _Optional[_Iterable[_Union[CameraHealth, _Mapping]]] = ..., frames_classified: _Optional[int] = ..., reports_created: _Optional[int] = ..., reports_acknowledged: _Optional[int] = ..., outbox_pending: _Optional[int] = ..., outbox_dropped: _Optional[int] = ..., backend: _Optional[str] = ..., inference_p50_ms: _Optional[float] = ..., inference_p95_ms: _Optional[float] = ..., mean_batch_size: _Optional[float] = ..., outbox_bytes: _Optional[int] = ..., outbox_oldest_age_s: _Optional[float] = ..., temperatures_c: _Optional[_Mapping[str, float]] = ..., model_version: _Optional[str] = ..., outbox_state: _Optional[str] = ..., reports_lost: _Optional[int] = ..., snapshots_sent: _Optional[int] = ..., reports_confirmed: _Optional[int] = ..., outbox_awaiting_cloud: _Optional[int] = ..., process_cpu_share: _Optional[float] = ..., cpu_count: _Optional[int] = ..., frames_uncertain: _Optional[int] = ..., previous_model_version: _Optional[str] = ..., model_update_error: _Optional[str] = ..., detector_version: _Optional[str] = ..., previous_detector_version: _Optional[str] = ...) -> None: ...

class CameraSettings(_message.Message):
    __slots__ = ("camera_id", "sample_hz", "enabled", "roi")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_HZ_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    sample_hz: float
    enabled: bool
    roi: Roi
    def __init__(self, camera_id: _Optional[str] = ..., sample_hz: _Optional[float] = ..., enabled: _Optional[bool] = ..., roi: _Optional[_Union[Roi, _Mapping]] = ...) -> None: ...

class Roi(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    width: float
    height: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ...) -> None: ...

class ConfigCommand(_message.Message):
    __slots__ = ("schema_version", "request_id", "report_interval_s", "window", "cameras")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    request_id: str
    report_interval_s: float
    window: int
    cameras: _containers.RepeatedCompositeFieldContainer[CameraSettings]
    def __init__(self, schema_version: _Optional[int] = ..., request_id: _Optional[str] = ..., report_interval_s: _Optional[float] = ..., window: _Optional[int] = ..., cameras: _Optional[_Iterable[_Union[CameraSettings, _Mapping]]] = ...) -> None: ...

class SnapshotCommand(_message.Message):
    __slots__ = ("schema_version", "request_id", "camera_id", "max_width")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    request_id: str
    camera_id: str
    max_width: int
    def __init__(self, schema_version: _Optional[int] = ..., request_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., max_width: _Optional[int] = ...) -> None: ...

class ModelUpdate(_message.Message):
    __slots__ = ("schema_version", "request_id", "version", "size", "sha256", "card_sha256", "signature", "grpc_address", "rollout_id", "kind")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CARD_SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    request_id: str
    version: str
    size: int
    sha256: str
    card_sha256: str
    signature: bytes
    grpc_address: str
    rollout_id: str
    kind: str
    def __init__(self, schema_version: _Optional[int] = ..., request_id: _Optional[str] = ..., version: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., card_sha256: _Optional[str] = ..., signature: _Optional[bytes] = ..., grpc_address: _Optional[str] = ..., rollout_id: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("schema_version", "device_id", "camera_id", "request_id", "capture_time_ms", "jpeg", "width", "height", "roi", "blurred_regions")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    JPEG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    BLURRED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    device_id: str
    camera_id: str
    request_id: str
    capture_time_ms: int
    jpeg: bytes
    width: int
    height: int
    roi: Roi
    blurred_regions: int
    def __init__(self, schema_version: _Optional[int] = ..., device_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., request_id: _Optional[str] = ..., capture_time_ms: _Optional[int] = ..., jpeg: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., roi: _Optional[_Union[Roi, _Mapping]] = ..., blurred_regions: _Optional[int] = ...) -> None: ...

class CommandReply(_message.Message):
    __slots__ = ("schema_version", "device_id", "request_id", "command", "ok", "error", "time_ms", "settings_json")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    device_id: str
    request_id: str
    command: str
    ok: bool
    error: str
    time_ms: int
    settings_json: str
    def __init__(self, schema_version: _Optional[int] = ..., device_id: _Optional[str] = ..., request_id: _Optional[str] = ..., command: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., time_ms: _Optional[int] = ..., settings_json: _Optional[str] = ...) -> None: ...

class DeliveryAck(_message.Message):
    __slots__ = ("schema_version", "device_id", "ranges", "time_ms")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    device_id: str
    ranges: _containers.RepeatedCompositeFieldContainer[SeqRange]
    time_ms: int
    def __init__(self, schema_version: _Optional[int] = ..., device_id: _Optional[str] = ..., ranges: _Optional[_Iterable[_Union[SeqRange, _Mapping]]] = ..., time_ms: _Optional[int] = ...) -> None: ...

class SeqRange(_message.Message):
    __slots__ = ("first", "last")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...
