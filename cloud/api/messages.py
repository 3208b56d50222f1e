"""Domain records to CityService messages: what the servicer sends, built in one place."""

from __future__ import annotations

import functools

from roadsense.cloud.city.rows import CameraMeasurement, MeasurementBin
from roadsense.cloud.city.segments import SegmentConfig
from roadsense.cloud.domain import Measured, SegmentForecast, SegmentSnapshot
from roadsense.proto.v1 import city_pb2, telemetry_pb2


@functools.lru_cache(maxsize=65_536)
def segment_message(snapshot: SegmentSnapshot) -> city_pb2.SegmentState:
    """Domain segment → protobuf (cached: snapshots are immutable; callers never mutate)."""
    return city_pb2.SegmentState(
        segment_id=snapshot.segment_id,
        level=snapshot.level,
        label=snapshot.label,
        updated_ms=snapshot.updated_ms,
        last_changed_ms=snapshot.last_changed_ms,
        camera_ids=list(snapshot.camera_ids),
        stale=snapshot.stale,
        reports=snapshot.reports,
        vehicles=snapshot.vehicles,
        stopped=snapshot.stopped,
        occupancy=snapshot.occupancy,
        measured_cameras=snapshot.measured_cameras,
    )


def measurements_message(m: Measured) -> telemetry_pb2.Measurements:
    """A camera's measurements as the wire carries them."""
    return telemetry_pb2.Measurements(
        samples=m.samples,
        vehicles_mean=m.vehicles_mean,
        vehicles_max=m.vehicles_max,
        stopped_mean=m.stopped_mean,
        stopped_max=m.stopped_max,
        occupancy=m.occupancy,
        classes=[
            telemetry_pb2.ClassMeasurement(
                vehicle_class=c.vehicle_class,
                mean_in_view=c.mean_in_view,
                max_in_view=c.max_in_view,
                crossings=c.crossings,
            )
            for c in m.classes
        ],
        crossings_counted=m.crossings_counted,
        speed=m.speed,
        speed_unit=m.speed_unit,
        level=m.level,
        rule=m.rule,
        confidence=m.confidence,
        tracks=m.tracks,
        detector_version=m.detector_version,
    )


def camera_message(camera: CameraMeasurement) -> city_pb2.CameraMeasurements:
    """A camera's newest measurements on a segment."""
    return city_pb2.CameraMeasurements(
        device_id=camera.device_id,
        camera_id=camera.camera_id,
        capture_time_ms=camera.capture_time_ms,
        measurements=measurements_message(camera.measured),
    )


def bin_message(b: MeasurementBin) -> city_pb2.MeasurementBin:
    """One bin of a segment's measurements."""
    return city_pb2.MeasurementBin(
        start_ms=b.start_ms,
        vehicles=b.vehicles,
        stopped=b.stopped,
        occupancy=b.occupancy,
        cameras=b.cameras,
        reports=b.reports,
        in_view=b.in_view,
        crossings=b.crossings,
    )


SEGMENTS_TAG = bytes([city_pb2.CityState.DESCRIPTOR.fields_by_name["segments"].number << 3 | 2])
"""Wire tag of a CityState.segments entry (a length-delimited field)."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@functools.lru_cache(maxsize=65_536)
def segment_entry(snapshot: SegmentSnapshot) -> bytes:
    """A segment as one encoded CityState.segments entry: tag, length, message.

    Protobuf messages may be encoded field by field, so joining entries and the other
    fields' encoding is a valid CityState.
    """
    body = segment_message(snapshot).SerializeToString()
    return SEGMENTS_TAG + _varint(len(body)) + body


def segment_info(config: SegmentConfig, configured: bool) -> city_pb2.SegmentInfo:
    """City configuration of a segment → protobuf."""
    return city_pb2.SegmentInfo(
        segment_id=config.id,
        name=config.name,
        road_class=config.road_class,
        length_m=config.length_m,
        coordinates=[city_pb2.LatLon(lat=lat, lon=lon) for lat, lon in config.coordinates],
        direction=config.direction,
        configured=configured,
    )


def forecast_message(
    forecast: SegmentForecast, horizons: list[int], now: int, stale_after_ms: int
) -> city_pb2.SegmentForecast:
    """Domain forecast → protobuf, with the horizons asked for and the stale flag as of now."""
    return city_pb2.SegmentForecast(
        segment_id=forecast.segment_id,
        origin_ms=forecast.origin_ms,
        points=[
            city_pb2.ForecastPoint(
                horizon=h,
                target_ms=forecast.target_ms(h),
                value=forecast.values[h - 1],
                observed_probability=forecast.observed_probability[h - 1],
            )
            for h in horizons
            if h <= len(forecast.values)
        ],
        model_version=forecast.model_version,
        newest_input_ms=forecast.newest_input_ms,
        missing_fraction=forecast.missing_fraction,
        stale=forecast.is_stale(now, stale_after_ms),
        made_ms=forecast.made_ms,
    )


def ingest_response(
    stored: int, duplicates: int, refused: list[tuple[int, str]]
) -> city_pb2.IngestResponse:
    """A feed ingestion's answer: stored, duplicates and each refused item with its reason."""
    return city_pb2.IngestResponse(
        accepted=stored,
        duplicates=duplicates,
        rejected=[city_pb2.RejectedItem(index=i, reason=r) for i, r in refused],
    )
