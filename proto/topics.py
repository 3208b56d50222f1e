"""MQTT topic names of the wire contract, built and parsed in one place.

roadsense/v1/<device_id>/status                  DeviceStatus (retained), device to cloud
roadsense/v1/<device_id>/<camera_id>/congestion  CongestionReport, device to cloud
roadsense/v1/<device_id>/health                  DeviceHealth, device to cloud
roadsense/v1/<device_id>/<camera_id>/snapshot    Snapshot, device to the operator who asked
roadsense/v1/<device_id>/cmd/<name>              commands to the device (config, snapshot, model)
roadsense/v1/<device_id>/reply/<name>            CommandReply, device to whoever commanded
roadsense/v1/<device_id>/ack                     DeliveryAck, cloud to device
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

PREFIX = "roadsense/v1"
# Identifiers double as topic levels and MQTT usernames: no wildcards, no
# separators, nothing a broker ACL pattern could misread.
IDENTIFIER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_IDENTIFIER = re.compile(rf"^{IDENTIFIER_PATTERN}$")
_DEVICE_TOPIC = re.compile(
    rf"^{PREFIX}/(?P<device>{IDENTIFIER_PATTERN})/(?P<kind>cmd|reply)/(?P<name>{IDENTIFIER_PATTERN})$"
)
_TOPIC = re.compile(
    rf"^{PREFIX}/(?P<device>{IDENTIFIER_PATTERN})/"
    rf"(?:(?P<kind>status|health)|(?P<camera>{IDENTIFIER_PATTERN})/congestion)$"
)


class TopicKind(enum.Enum):
    """What a telemetry topic carries."""

    STATUS = "status"
    HEALTH = "health"
    CONGESTION = "congestion"


@dataclass(frozen=True)
class TelemetryTopic:
    """A parsed telemetry topic."""

    kind: TopicKind
    device_id: str
    camera_id: str | None = None


def is_identifier(value: str) -> bool:
    """True when value is usable as a device, camera or segment id."""
    return bool(_IDENTIFIER.fullmatch(value))


def status_topic(device_id: str) -> str:
    """Topic of a device's retained birth / last-will message."""
    return f"{PREFIX}/{device_id}/status"


def health_topic(device_id: str) -> str:
    """Topic of a device's periodic health message."""
    return f"{PREFIX}/{device_id}/health"


def congestion_topic(device_id: str, camera_id: str) -> str:
    """Topic of one camera's congestion reports."""
    return f"{PREFIX}/{device_id}/{camera_id}/congestion"


def snapshot_topic(device_id: str, camera_id: str) -> str:
    """Topic of a camera still a device sends on request (not telemetry: not ingested)."""
    return f"{PREFIX}/{device_id}/{camera_id}/snapshot"


def command_topic(device_id: str, name: str) -> str:
    """Topic of a command to a device."""
    return f"{PREFIX}/{device_id}/cmd/{name}"


def command_filter(device_id: str) -> str:
    """Filter covering every command to a device."""
    return f"{PREFIX}/{device_id}/cmd/#"


def reply_topic(device_id: str, name: str) -> str:
    """Topic of a device's reply to a command (inside its own subtree)."""
    return f"{PREFIX}/{device_id}/reply/{name}"


def ack_topic(device_id: str) -> str:
    """Topic of the cloud's delivery confirmations to a device (only the cloud writes it)."""
    return f"{PREFIX}/{device_id}/ack"


def telemetry_subscriptions(shared_group: str | None = None) -> list[str]:
    """Topic filters that cover all device telemetry, optionally shared."""
    filters = [f"{PREFIX}/+/status", f"{PREFIX}/+/health", f"{PREFIX}/+/+/congestion"]
    if shared_group:
        return [f"$share/{shared_group}/{f}" for f in filters]
    return filters


def parse_topic(topic: str) -> TelemetryTopic | None:
    """Parse a telemetry topic; None when it is not one of the contract's."""
    match = _TOPIC.fullmatch(topic)
    if match is None:
        return None
    device = match["device"]
    if match["camera"] is not None:
        return TelemetryTopic(TopicKind.CONGESTION, device, match["camera"])
    return TelemetryTopic(TopicKind(match["kind"]), device)


def reply_filter(name: str) -> str:
    """Filter covering every device's replies to one command."""
    return f"{PREFIX}/+/reply/{name}"


@dataclass(frozen=True)
class CommandTopic:
    """A parsed command or reply topic: whose, and which command."""

    device_id: str
    name: str


def parse_command_topic(topic: str) -> CommandTopic | None:
    """Parse a ``cmd/<name>`` topic; None when it is not one."""
    return _device_topic(topic, "cmd")


def parse_reply_topic(topic: str) -> CommandTopic | None:
    """Parse a ``reply/<name>`` topic; None when it is not one."""
    return _device_topic(topic, "reply")


def _device_topic(topic: str, kind: str) -> CommandTopic | None:
    match = _DEVICE_TOPIC.fullmatch(topic)
    if match is None or match["kind"] != kind:
        return None
    return CommandTopic(match["device"], match["name"])
