"""The dashboard's JSON: plain dictionaries built from the cloud's state and store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from roadsense.cloud.city.segments import ROAD_CLASS_WEIGHT, SegmentConfig, unconfigured
from roadsense.cloud.city.state import CityTracker, congestion_index, segments_per_band
from roadsense.cloud.domain import SegmentForecast, SegmentSnapshot
from roadsense.cloud.forecast.job import ForecastJob
from roadsense.cloud.ingest.subscriber import IngestStats
from roadsense.cloud.store.interface import HistoryPoint, Store

Json = dict[str, Any]


MEASURED_BIN_MS = 15 * 60_000
"""The segment panel's bins of measured vehicles."""


def segment_state(snapshot: SegmentSnapshot) -> Json:
    """A segment's fused state, as the page and the event stream carry it."""
    return {
        "id": snapshot.segment_id,
        "level": snapshot.level,
        "label": snapshot.label,
        "updated_ms": snapshot.updated_ms,
        "last_changed_ms": snapshot.last_changed_ms,
        "cameras": list(snapshot.camera_ids),
        "stale": snapshot.stale,
        "reports": snapshot.reports,
        "vehicles": snapshot.vehicles,
        "stopped": snapshot.stopped,
        "occupancy": snapshot.occupancy,
        "measured_cameras": snapshot.measured_cameras,
    }


def forecast_json(forecast: SegmentForecast, now: int, stale_after_ms: int) -> Json:
    """Every horizon of a forecast, with its stale flag as of ``now``."""
    return {
        "origin_ms": forecast.origin_ms,
        "interval_ms": forecast.interval_ms,
        "model_version": forecast.model_version,
        "newest_input_ms": forecast.newest_input_ms,
        "missing_fraction": forecast.missing_fraction,
        "made_ms": forecast.made_ms,
        "stale": forecast.is_stale(now, stale_after_ms),
        "points": [
            {
                "horizon": h,
                "target_ms": forecast.target_ms(h),
                "value": value,
                "observed_probability": forecast.observed_probability[h - 1],
            }
            for h, value in enumerate(forecast.values, start=1)
        ],
    }


def index_history(
    histories: Mapping[str, Sequence[HistoryPoint]], city: Mapping[str, SegmentConfig]
) -> list[Json]:
    """The city index per history interval: weighted mean level of the segments seen in it."""
    sums: dict[int, list[float]] = {}
    for segment_id, points in histories.items():
        config = city.get(segment_id)
        weight = config.weight if config else ROAD_CLASS_WEIGHT["local"]
        for point in points:
            total = sums.setdefault(point.start_ms, [0.0, 0.0])
            total[0] += weight * point.level
            total[1] += weight
    return [
        {"start_ms": start, "index": round(total / weight, 3)}
        for start, (total, weight) in sorted(sums.items())
    ]


def newest_rollout(store: Store) -> tuple[Json | None, dict[str, Json]]:
    """The newest rollout (state, model, why) and each of its devices' part in it."""
    newest = next(iter(store.rollouts()), None)
    if newest is None:
        return None, {}
    devices = {
        d.device_id: {
            "stage": "canary" if d.stage == 0 else f"stage {d.stage}",
            "state": d.state,
            "model_version": d.reported_version,
            "error": d.error,
        }
        for d in store.rollout_devices(newest.rollout_id)
    }
    summary = {
        "rollout_id": newest.rollout_id,
        "model_version": newest.model_version,
        "state": newest.state,
        "reason": newest.reason,
    }
    return summary, devices


def city_summary(
    *,
    tracker: CityTracker,
    store: Store,
    city: Mapping[str, SegmentConfig],
    ingest: IngestStats,
    ingest_rate_per_s: float,
    now: int,
    history_from_ms: int,
) -> Json:
    """The city panel: index now and over time, bands, devices, ingest, dead letters."""
    segments = tracker.snapshot(now)
    registry = store.registry()
    rollout, in_rollout = newest_rollout(store)
    devices = [
        {
            "id": d.device_id,
            "online": d.online,
            "revoked": d.device_id in registry and registry[d.device_id].revoked_ms is not None,
            "last_seen_ms": d.last_seen_ms,
            "cameras": list(d.camera_ids),
            "model_version": d.model_version,
            "rollout": in_rollout.get(d.device_id),
        }
        for d in store.devices()
    ]
    stored = store.histories(history_from_ms, now)
    histories = {s.segment_id: stored.get(s.segment_id, []) for s in segments}
    dead_letters = store.dead_letter_codes()
    return {
        "as_of_ms": now,
        "congestion_index": congestion_index(segments, city),
        "index_history": index_history(histories, city),
        "segments_per_band": segments_per_band(segments),
        "stale_segments": sum(s.stale for s in segments),
        "devices": devices,
        "rollout": rollout,
        "devices_online": sum(d["online"] and not d["revoked"] for d in devices),
        "devices_offline": sum(not d["online"] and not d["revoked"] for d in devices),
        "devices_revoked": sum(bool(d["revoked"]) for d in devices),
        "ingest": {
            "received": ingest.received,
            "accepted": ingest.accepted,
            "duplicates": ingest.duplicates,
            "rejected": ingest.rejected,
            "rate_per_s": round(ingest_rate_per_s, 2),
        },
        "dead_letters": {"total": sum(dead_letters.values()), "by_code": dead_letters},
    }


def segment_detail(
    segment_id: str,
    *,
    tracker: CityTracker,
    store: Store,
    city: Mapping[str, SegmentConfig],
    forecasts: ForecastJob | None,
    now: int,
    history_from_ms: int,
) -> Json | None:
    """One segment: its configuration, state, recent history, speeds and forecast."""
    (state,) = tracker.snapshot(now, [segment_id]) or (None,)
    latest = forecasts.latest() if forecasts else {}
    observations = store.observations(segment_id, history_from_ms, now)
    if state is None and segment_id not in city and segment_id not in latest and not observations:
        return None
    config = city.get(segment_id) or unconfigured(segment_id)
    forecast: Json | None = None
    unavailable = "forecasting is off in this cloud's configuration"
    if forecasts is not None:
        found = latest.get(segment_id)
        if found is not None:
            forecast = forecast_json(found, now, forecasts.stale_after_ms)
            unavailable = ""
        else:
            unavailable = "no forecast for this segment"
    return {
        "id": segment_id,
        "name": config.name,
        "road_class": config.road_class,
        "direction": config.direction,
        "length_m": config.length_m,
        "configured": segment_id in city,
        "state": segment_state(state) if state else None,
        "history": [
            {"start_ms": p.start_ms, "level": p.level, "reports": p.reports}
            for p in store.history(segment_id, history_from_ms, now)
        ],
        "observations": [
            {"time_ms": o.time_ms, "value": o.value, "unit": o.unit} for o in observations
        ],
        "forecast": forecast,
        "forecast_unavailable": unavailable,
        "cameras": [
            {
                "camera": f"{c.device_id}/{c.camera_id}",
                "time_ms": c.capture_time_ms,
                "vehicles": c.measured.vehicles_mean,
                "stopped": c.measured.stopped_mean,
                "occupancy": c.measured.occupancy,
                "level": c.measured.level,
                "rule": c.measured.rule,
            }
            for c in store.camera_measurements(segment_id)
        ],
        "measured": [
            {"start_ms": b.start_ms, "vehicles": b.vehicles, "stopped": b.stopped}
            for b in store.measurement_bins(segment_id, history_from_ms, now, MEASURED_BIN_MS)
        ],
    }
