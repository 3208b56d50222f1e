"""Domain records to CityService messages: what the servicer sends, built in one place."""

from __future__ import annotations

import functools

from roadsense.cloud.city.segments import SegmentConfig
from roadsense.cloud.domain import SegmentForecast, SegmentSnapshot
from roadsense.proto.v1 import city_pb2


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
