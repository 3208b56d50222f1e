"""gRPC servicers: they translate between protobuf and the domain, nothing more."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc

from roadsense.cloud.domain import SegmentSnapshot
from roadsense.cloud.feed import ChangeFeed
from roadsense.cloud.state import CityTracker, congestion_index
from roadsense.cloud.store import Store
from roadsense.core.timeutil import now_ms
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

logger = logging.getLogger(__name__)

WATCH_POLL_S = 0.5
"""How often an idle watch stream checks whether its client is still there."""


def segment_message(snapshot: SegmentSnapshot) -> city_pb2.SegmentState:
    """Domain segment → protobuf."""
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


class CityServicer(city_pb2_grpc.CityServiceServicer):
    """roadsense.v1.CityService."""

    def __init__(self, tracker: CityTracker, feed: ChangeFeed, store: Store) -> None:
        self._tracker = tracker
        self._feed = feed
        self._store = store

    def _city_state(self, segment_ids: list[str]) -> city_pb2.CityState:
        now = now_ms()
        segments = self._tracker.snapshot(now, segment_ids)
        devices = self._store.devices()
        online = sum(1 for d in devices if d.online)
        return city_pb2.CityState(
            segments=[segment_message(s) for s in segments],
            congestion_index=congestion_index(segments),
            as_of_ms=now,
            devices_online=online,
            devices_offline=len(devices) - online,
        )

    def GetCityState(  # noqa: N802 - gRPC method name
        self, request: city_pb2.GetCityStateRequest, context: grpc.ServicerContext
    ) -> city_pb2.CityState:
        return self._city_state(list(request.segment_ids))

    def WatchCityState(  # noqa: N802 - gRPC method name
        self, request: city_pb2.WatchCityStateRequest, context: grpc.ServicerContext
    ) -> Iterator[city_pb2.CityStateUpdate]:
        # Subscribe before the snapshot so no change falls between the two.
        watcher = self._feed.subscribe(request.segment_ids)
        try:
            snapshot = self._city_state(list(request.segment_ids))
            yield city_pb2.CityStateUpdate(
                snapshot=snapshot, congestion_index=snapshot.congestion_index
            )
            while context.is_active() and not watcher.closed:
                changed = watcher.take(WATCH_POLL_S)
                if not changed:
                    continue
                now = now_ms()
                index = congestion_index(self._tracker.snapshot(now))
                for snapshot_change in changed:
                    yield city_pb2.CityStateUpdate(
                        segment=segment_message(self._tracker.with_staleness(snapshot_change, now)),
                        congestion_index=index,
                    )
        finally:
            self._feed.unsubscribe(watcher)


class FleetServicer(city_pb2_grpc.FleetServiceServicer):
    """roadsense.v1.FleetService (the device registry)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def ListDevices(  # noqa: N802 - gRPC method name
        self, request: city_pb2.ListDevicesRequest, context: grpc.ServicerContext
    ) -> city_pb2.ListDevicesResponse:
        return city_pb2.ListDevicesResponse(
            devices=[
                city_pb2.Device(
                    device_id=d.device_id,
                    online=d.online,
                    last_seen_ms=d.last_seen_ms,
                    agent_version=d.agent_version,
                    model_version=d.model_version,
                    camera_ids=list(d.camera_ids),
                )
                for d in self._store.devices()
            ]
        )
