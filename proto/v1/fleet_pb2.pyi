from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelPart(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_PART_ONNX: _ClassVar[ModelPart]
    MODEL_PART_CARD: _ClassVar[ModelPart]
MODEL_PART_ONNX: ModelPart
MODEL_PART_CARD: ModelPart

class Device(_message.Message):
    __slots__ = ("device_id", "online", "last_seen_ms", "agent_version", "model_version", "camera_ids", "enrolled", "revoked", "enrolled_ms", "revoked_ms", "certificate_serial", "revoke_reason")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_MS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SERIAL_FIELD_NUMBER: _ClassVar[int]
    REVOKE_REASON_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    online: bool
    last_seen_ms: int
    agent_version: str
    model_version: str
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    enrolled: bool
    revoked: bool
    enrolled_ms: int
    revoked_ms: int
    certificate_serial: str
    revoke_reason: str
    def __init__(self, device_id: _Optional[str] = ..., online: _Optional[bool] = ..., last_seen_ms: _Optional[int] = ..., agent_version: _Optional[str] = ..., model_version: _Optional[str] = ..., camera_ids: _Optional[_Iterable[str]] = ..., enrolled: _Optional[bool] = ..., revoked: _Optional[bool] = ..., enrolled_ms: _Optional[int] = ..., revoked_ms: _Optional[int] = ..., certificate_serial: _Optional[str] = ..., revoke_reason: _Optional[str] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("token", "csr_pem")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: bytes
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("device_id", "certificate_pem", "ca_pem", "edge_config_toml", "model_signing_key_pem")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    EDGE_CONFIG_TOML_FIELD_NUMBER: _ClassVar[int]
    MODEL_SIGNING_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    certificate_pem: bytes
    ca_pem: bytes
    edge_config_toml: str
    model_signing_key_pem: bytes
    def __init__(self, device_id: _Optional[str] = ..., certificate_pem: _Optional[bytes] = ..., ca_pem: _Optional[bytes] = ..., edge_config_toml: _Optional[str] = ..., model_signing_key_pem: _Optional[bytes] = ...) -> None: ...

class RevokeDeviceRequest(_message.Message):
    __slots__ = ("device_id", "reason")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    reason: str
    def __init__(self, device_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeDeviceResponse(_message.Message):
    __slots__ = ("device", "revoked_serials")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    REVOKED_SERIALS_FIELD_NUMBER: _ClassVar[int]
    device: Device
    revoked_serials: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., revoked_serials: _Optional[_Iterable[str]] = ...) -> None: ...

class DownloadModelRequest(_message.Message):
    __slots__ = ("version", "offset", "part")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    version: str
    offset: int
    part: ModelPart
    def __init__(self, version: _Optional[str] = ..., offset: _Optional[int] = ..., part: _Optional[_Union[ModelPart, str]] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("offset", "data", "total_size")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    total_size: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., total_size: _Optional[int] = ...) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("model_version", "canary_percent", "canary_devices", "device_ids", "site")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANARY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CANARY_DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    canary_percent: float
    canary_devices: int
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    site: str
    def __init__(self, model_version: _Optional[str] = ..., canary_percent: _Optional[float] = ..., canary_devices: _Optional[int] = ..., device_ids: _Optional[_Iterable[str]] = ..., site: _Optional[str] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("rollout_id",)
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    def __init__(self, rollout_id: _Optional[str] = ...) -> None: ...

class RolloutActionRequest(_message.Message):
    __slots__ = ("rollout_id", "reason")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    reason: str
    def __init__(self, rollout_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RolloutDevice(_message.Message):
    __slots__ = ("device_id", "stage", "previous_version", "want_version", "reported_version", "state", "error", "sent_ms", "attempts", "updated_ms")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    WANT_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPORTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SENT_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    stage: int
    previous_version: str
    want_version: str
    reported_version: str
    state: str
    error: str
    sent_ms: int
    attempts: int
    updated_ms: int
    def __init__(self, device_id: _Optional[str] = ..., stage: _Optional[int] = ..., previous_version: _Optional[str] = ..., want_version: _Optional[str] = ..., reported_version: _Optional[str] = ..., state: _Optional[str] = ..., error: _Optional[str] = ..., sent_ms: _Optional[int] = ..., attempts: _Optional[int] = ..., updated_ms: _Optional[int] = ...) -> None: ...

class RolloutTransition(_message.Message):
    __slots__ = ("time_ms", "actor", "from_state", "to_state", "reason")
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    actor: str
    from_state: str
    to_state: str
    reason: str
    def __init__(self, time_ms: _Optional[int] = ..., actor: _Optional[str] = ..., from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RolloutStatus(_message.Message):
    __slots__ = ("rollout_id", "model_version", "state", "reason", "canary_percent", "stage", "created_ms", "created_by", "updated_ms", "evaluation_json", "devices", "events")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANARY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_JSON_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    model_version: str
    state: str
    reason: str
    canary_percent: float
    stage: int
    created_ms: int
    created_by: str
    updated_ms: int
    evaluation_json: str
    devices: _containers.RepeatedCompositeFieldContainer[RolloutDevice]
    events: _containers.RepeatedCompositeFieldContainer[RolloutTransition]
    def __init__(self, rollout_id: _Optional[str] = ..., model_version: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., canary_percent: _Optional[float] = ..., stage: _Optional[int] = ..., created_ms: _Optional[int] = ..., created_by: _Optional[str] = ..., updated_ms: _Optional[int] = ..., evaluation_json: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[RolloutDevice, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[RolloutTransition, _Mapping]]] = ...) -> None: ...
