"""The device's retained status: ONLINE at birth, OFFLINE as its last will or at a clean stop."""

from __future__ import annotations

from roadsense.core import __version__
from roadsense.core.publisher import LastWill
from roadsense.core.timeutil import now_ms
from roadsense.edge.config import EdgeConfig
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.topics import status_topic
from roadsense.proto.v1 import telemetry_pb2


def status_message(device_id: str, state: int, model_version: str, camera_ids: list[str]) -> bytes:
    """Serialised DeviceStatus for birth (ONLINE) or last will (OFFLINE)."""
    return telemetry_pb2.DeviceStatus(
        schema_version=SCHEMA_VERSION,
        device_id=device_id,
        state=state,  # type: ignore[arg-type]
        time_ms=now_ms(),
        agent_version=__version__,
        model_version=model_version,
        camera_ids=camera_ids,
    ).SerializeToString()


def last_will(config: EdgeConfig, model_version: str) -> LastWill:
    """The retained OFFLINE status the broker publishes if the device vanishes."""
    payload = status_message(
        config.device_id,
        telemetry_pb2.DeviceStatus.OFFLINE,
        model_version,
        [c.id for c in config.cameras],
    )
    return LastWill(status_topic(config.device_id), payload)
