from roadsense.proto.v1 import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentState(_message.Message):
    __slots__ = ("segment_id", "level", "label", "updated_ms", "last_changed_ms", "camera_ids", "stale", "reports", "vehicles", "stopped", "occupancy", "measured_cameras")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGED_MS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    VEHICLES_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    OCCUPANCY_FIELD_NUMBER: _ClassVar[int]
    MEASURED_CAMERAS_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    level: float
    label: str
    updated_ms: int
    last_changed_ms: int
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    stale: bool
    reports: int
    vehicles: float
    stopped: float
    occupancy: float
    measured_cameras: int
    def __init__(self, segment_id: _Optional[str] = ..., level: _Optional[float] = ..., label: _Optional[str] = ..., updated_ms: _Optional[int] = ..., last_changed_ms: _Optional[int] = ..., camera_ids: _Optional[_Iterable[str]] = ..., stale: _Optional[bool] = ..., reports: _Optional[int] = ..., vehicles: _Optional[float] = ..., stopped: _Optional[float] = ..., occupancy: _Optional[float] = ..., measured_cameras: _Optional[int] = ...) -> None: ...

class CityState(_message.Message):
    __slots__ = ("segments", "congestion_index", "as_of_ms", "devices_online", "devices_offline", "segments_per_band")
    class SegmentsPerBandEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    CONGESTION_INDEX_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_ONLINE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_OFFLINE_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_PER_BAND_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentState]
    congestion_index: float
    as_of_ms: int
    devices_online: int
    devices_offline: int
    segments_per_band: _containers.ScalarMap[str, int]
    def __init__(self, segments: _Optional[_Iterable[_Union[SegmentState, _Mapping]]] = ..., congestion_index: _Optional[float] = ..., as_of_ms: _Optional[int] = ..., devices_online: _Optional[int] = ..., devices_offline: _Optional[int] = ..., segments_per_band: _Optional[_Mapping[str, int]] = ...) -> None: ...

class SegmentInfo(_message.Message):
    __slots__ = ("segment_id", "name", "road_class", "length_m", "coordinates", "direction", "configured")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROAD_CLASS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_M_FIELD_NUMBER: _ClassVar[int]
    COORDINATES_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    name: str
    road_class: str
    length_m: float
    coordinates: _containers.RepeatedCompositeFieldContainer[LatLon]
    direction: str
    configured: bool
    def __init__(self, segment_id: _Optional[str] = ..., name: _Optional[str] = ..., road_class: _Optional[str] = ..., length_m: _Optional[float] = ..., coordinates: _Optional[_Iterable[_Union[LatLon, _Mapping]]] = ..., direction: _Optional[str] = ..., configured: _Optional[bool] = ...) -> None: ...

class LatLon(_message.Message):
    __slots__ = ("lat", "lon")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lon: float
    def __init__(self, lat: _Optional[float] = ..., lon: _Optional[float] = ...) -> None: ...

class HistoryPoint(_message.Message):
    __slots__ = ("start_ms", "level", "reports")
    START_MS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    start_ms: int
    level: float
    reports: int
    def __init__(self, start_ms: _Optional[int] = ..., level: _Optional[float] = ..., reports: _Optional[int] = ...) -> None: ...

class ListSegmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSegmentsResponse(_message.Message):
    __slots__ = ("segments", "states")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentInfo]
    states: _containers.RepeatedCompositeFieldContainer[SegmentState]
    def __init__(self, segments: _Optional[_Iterable[_Union[SegmentInfo, _Mapping]]] = ..., states: _Optional[_Iterable[_Union[SegmentState, _Mapping]]] = ...) -> None: ...

class GetSegmentRequest(_message.Message):
    __slots__ = ("segment_id", "from_ms", "to_ms")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    from_ms: int
    to_ms: int
    def __init__(self, segment_id: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ...) -> None: ...

class GetSegmentResponse(_message.Message):
    __slots__ = ("info", "state", "history", "interval_ms", "cameras")
    INFO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    info: SegmentInfo
    state: SegmentState
    history: _containers.RepeatedCompositeFieldContainer[HistoryPoint]
    interval_ms: int
    cameras: _containers.RepeatedCompositeFieldContainer[CameraMeasurements]
    def __init__(self, info: _Optional[_Union[SegmentInfo, _Mapping]] = ..., state: _Optional[_Union[SegmentState, _Mapping]] = ..., history: _Optional[_Iterable[_Union[HistoryPoint, _Mapping]]] = ..., interval_ms: _Optional[int] = ..., cameras: _Optional[_Iterable[_Union[CameraMeasurements, _Mapping]]] = ...) -> None: ...

class CameraMeasurements(_message.Message):
    __slots__ = ("device_id", "camera_id", "capture_time_ms", "measurements")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    camera_id: str
    capture_time_ms: int
    measurements: _telemetry_pb2.Measurements
    def __init__(self, device_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., capture_time_ms: _Optional[int] = ..., measurements: _Optional[_Union[_telemetry_pb2.Measurements, _Mapping]] = ...) -> None: ...

class GetSegmentBinsRequest(_message.Message):
    __slots__ = ("segment_id", "from_ms", "to_ms", "bin_minutes")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    BIN_MINUTES_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    from_ms: int
    to_ms: int
    bin_minutes: int
    def __init__(self, segment_id: _Optional[str] = ..., from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., bin_minutes: _Optional[int] = ...) -> None: ...

class MeasurementBin(_message.Message):
    __slots__ = ("start_ms", "vehicles", "stopped", "occupancy", "cameras", "reports", "in_view", "crossings")
    class InViewEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CrossingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    START_MS_FIELD_NUMBER: _ClassVar[int]
    VEHICLES_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    OCCUPANCY_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    IN_VIEW_FIELD_NUMBER: _ClassVar[int]
    CROSSINGS_FIELD_NUMBER: _ClassVar[int]
    start_ms: int
    vehicles: float
    stopped: float
    occupancy: float
    cameras: int
    reports: int
    in_view: _containers.ScalarMap[str, float]
    crossings: _containers.ScalarMap[str, int]
    def __init__(self, start_ms: _Optional[int] = ..., vehicles: _Optional[float] = ..., stopped: _Optional[float] = ..., occupancy: _Optional[float] = ..., cameras: _Optional[int] = ..., reports: _Optional[int] = ..., in_view: _Optional[_Mapping[str, float]] = ..., crossings: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetSegmentBinsResponse(_message.Message):
    __slots__ = ("segment_id", "bin_ms", "bins")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    BIN_MS_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    bin_ms: int
    bins: _containers.RepeatedCompositeFieldContainer[MeasurementBin]
    def __init__(self, segment_id: _Optional[str] = ..., bin_ms: _Optional[int] = ..., bins: _Optional[_Iterable[_Union[MeasurementBin, _Mapping]]] = ...) -> None: ...

class GetCityStateRequest(_message.Message):
    __slots__ = ("segment_ids", "min_level", "road_classes", "exclude_stale")
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    ROAD_CLASSES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_STALE_FIELD_NUMBER: _ClassVar[int]
    segment_ids: _containers.RepeatedScalarFieldContainer[str]
    min_level: float
    road_classes: _containers.RepeatedScalarFieldContainer[str]
    exclude_stale: bool
    def __init__(self, segment_ids: _Optional[_Iterable[str]] = ..., min_level: _Optional[float] = ..., road_classes: _Optional[_Iterable[str]] = ..., exclude_stale: _Optional[bool] = ...) -> None: ...

class DeflatedCityState(_message.Message):
    __slots__ = ("city_state", "encoded_size")
    CITY_STATE_FIELD_NUMBER: _ClassVar[int]
    ENCODED_SIZE_FIELD_NUMBER: _ClassVar[int]
    city_state: bytes
    encoded_size: int
    def __init__(self, city_state: _Optional[bytes] = ..., encoded_size: _Optional[int] = ...) -> None: ...

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

class Observation(_message.Message):
    __slots__ = ("segment_id", "time_ms", "value", "unit", "source")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    time_ms: int
    value: float
    unit: str
    source: str
    def __init__(self, segment_id: _Optional[str] = ..., time_ms: _Optional[int] = ..., value: _Optional[float] = ..., unit: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class IngestObservationsRequest(_message.Message):
    __slots__ = ("observations",)
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    observations: _containers.RepeatedCompositeFieldContainer[Observation]
    def __init__(self, observations: _Optional[_Iterable[_Union[Observation, _Mapping]]] = ...) -> None: ...

class RejectedItem(_message.Message):
    __slots__ = ("index", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    reason: str
    def __init__(self, index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedItem]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedItem, _Mapping]]] = ...) -> None: ...

class WeatherObservation(_message.Message):
    __slots__ = ("time_ms", "code", "source")
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    code: str
    source: str
    def __init__(self, time_ms: _Optional[int] = ..., code: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class IngestWeatherRequest(_message.Message):
    __slots__ = ("weather",)
    WEATHER_FIELD_NUMBER: _ClassVar[int]
    weather: _containers.RepeatedCompositeFieldContainer[WeatherObservation]
    def __init__(self, weather: _Optional[_Iterable[_Union[WeatherObservation, _Mapping]]] = ...) -> None: ...

class GetForecastRequest(_message.Message):
    __slots__ = ("segment_ids", "horizons")
    SEGMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    HORIZONS_FIELD_NUMBER: _ClassVar[int]
    segment_ids: _containers.RepeatedScalarFieldContainer[str]
    horizons: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, segment_ids: _Optional[_Iterable[str]] = ..., horizons: _Optional[_Iterable[int]] = ...) -> None: ...

class ForecastPoint(_message.Message):
    __slots__ = ("horizon", "target_ms", "value", "observed_probability")
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    TARGET_MS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    horizon: int
    target_ms: int
    value: float
    observed_probability: float
    def __init__(self, horizon: _Optional[int] = ..., target_ms: _Optional[int] = ..., value: _Optional[float] = ..., observed_probability: _Optional[float] = ...) -> None: ...

class SegmentForecast(_message.Message):
    __slots__ = ("segment_id", "origin_ms", "points", "model_version", "newest_input_ms", "missing_fraction", "stale", "made_ms")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_MS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NEWEST_INPUT_MS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FRACTION_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    MADE_MS_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    origin_ms: int
    points: _containers.RepeatedCompositeFieldContainer[ForecastPoint]
    model_version: str
    newest_input_ms: int
    missing_fraction: float
    stale: bool
    made_ms: int
    def __init__(self, segment_id: _Optional[str] = ..., origin_ms: _Optional[int] = ..., points: _Optional[_Iterable[_Union[ForecastPoint, _Mapping]]] = ..., model_version: _Optional[str] = ..., newest_input_ms: _Optional[int] = ..., missing_fraction: _Optional[float] = ..., stale: _Optional[bool] = ..., made_ms: _Optional[int] = ...) -> None: ...

class HorizonScore(_message.Message):
    __slots__ = ("horizon", "mae", "scored")
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    MAE_FIELD_NUMBER: _ClassVar[int]
    SCORED_FIELD_NUMBER: _ClassVar[int]
    horizon: int
    mae: float
    scored: int
    def __init__(self, horizon: _Optional[int] = ..., mae: _Optional[float] = ..., scored: _Optional[int] = ...) -> None: ...

class GetForecastResponse(_message.Message):
    __slots__ = ("forecasts", "model_version", "interval_ms", "online", "unavailable")
    class UnavailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FORECASTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    forecasts: _containers.RepeatedCompositeFieldContainer[SegmentForecast]
    model_version: str
    interval_ms: int
    online: _containers.RepeatedCompositeFieldContainer[HorizonScore]
    unavailable: _containers.ScalarMap[str, str]
    def __init__(self, forecasts: _Optional[_Iterable[_Union[SegmentForecast, _Mapping]]] = ..., model_version: _Optional[str] = ..., interval_ms: _Optional[int] = ..., online: _Optional[_Iterable[_Union[HorizonScore, _Mapping]]] = ..., unavailable: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ClassifyImageRequest(_message.Message):
    __slots__ = ("image", "explain")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    explain: bool
    def __init__(self, image: _Optional[bytes] = ..., explain: _Optional[bool] = ...) -> None: ...

class ClassifyImageResponse(_message.Message):
    __slots__ = ("labels", "probabilities", "level", "confidence", "model_version", "heat_map_png")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HEAT_MAP_PNG_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[str]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    level: str
    confidence: float
    model_version: str
    heat_map_png: bytes
    def __init__(self, labels: _Optional[_Iterable[str]] = ..., probabilities: _Optional[_Iterable[float]] = ..., level: _Optional[str] = ..., confidence: _Optional[float] = ..., model_version: _Optional[str] = ..., heat_map_png: _Optional[bytes] = ...) -> None: ...

class MeasureImageRequest(_message.Message):
    __slots__ = ("image", "zone", "explain")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    zone: _containers.RepeatedScalarFieldContainer[float]
    explain: bool
    def __init__(self, image: _Optional[bytes] = ..., zone: _Optional[_Iterable[float]] = ..., explain: _Optional[bool] = ...) -> None: ...

class DetectedVehicle(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2", "vehicle_class", "score")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_CLASS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    vehicle_class: str
    score: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ..., vehicle_class: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class MeasureImageResponse(_message.Message):
    __slots__ = ("vehicles", "occupancy", "detector_version", "evidence_png")
    VEHICLES_FIELD_NUMBER: _ClassVar[int]
    OCCUPANCY_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_PNG_FIELD_NUMBER: _ClassVar[int]
    vehicles: _containers.RepeatedCompositeFieldContainer[DetectedVehicle]
    occupancy: float
    detector_version: str
    evidence_png: bytes
    def __init__(self, vehicles: _Optional[_Iterable[_Union[DetectedVehicle, _Mapping]]] = ..., occupancy: _Optional[float] = ..., detector_version: _Optional[str] = ..., evidence_png: _Optional[bytes] = ...) -> None: ...
