from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentState(_message.Message):
    __slots__ = ("segment_id", "level", "label", "updated_ms", "last_changed_ms", "camera_ids", "stale", "reports")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGED_MS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    level: float
    label: str
    updated_ms: int
    last_changed_ms: int
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    stale: bool
    reports: int
    def __init__(self, segment_id: _Optional[str] = ..., level: _Optional[float] = ..., label: _Optional[str] = ..., updated_ms: _Optional[int] = ..., last_changed_ms: _Optional[int] = ..., camera_ids: _Optional[_Iterable[str]] = ..., stale: _Optional[bool] = ..., reports: _Optional[int] = ...) -> None: ...

class CityState(_message.Message):
    __slots__ = ("segments", "congestion_index", "as_of_ms", "devices_online", "devices_offline")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    CONGESTION_INDEX_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_ONLINE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_OFFLINE_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentState]
    congestion_index: float
    as_of_ms: int
    devices_online: int
    devices_offline: int
    def __init__(self, segments: _Optional[_Iterable[_Union[SegmentState, _Mapping]]] = ..., congestion_index: _Optional[float] = ..., as_of_ms: _Optional[int] = ..., devices_online: _Optional[int] = ..., devices_offline: _Optional[int] = ...) -> None: ...

class GetCityStateRequest(_message.Message):
    __slots__ = ("segment_ids",)
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    segment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, segment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchCityStateRequest(_message.Message):
    __slots__ = ("segment_ids",)
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    segment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, segment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CityStateUpdate(_message.Message):
    __slots__ = ("snapshot", "segment", "congestion_index")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    CONGESTION_INDEX_FIELD_NUMBER: _ClassVar[int]
    snapshot: CityState
    segment: SegmentState
    congestion_index: float
    def __init__(self, snapshot: _Optional[_Union[CityState, _Mapping]] = ..., segment: _Optional[_Union[SegmentState, _Mapping]] = ..., congestion_index: _Optional[float] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("device_id", "online", "last_seen_ms", "agent_version", "model_version", "camera_ids")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    online: bool
    last_seen_ms: int
    agent_version: str
    model_version: str
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, device_id: _Optional[str] = ..., online: _Optional[bool] = ..., last_seen_ms: _Optional[int] = ..., agent_version: _Optional[str] = ..., model_version: _Optional[str] = ..., camera_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...
