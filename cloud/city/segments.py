"""The city's road segments as the configuration describes them.

Segments may also appear only through reports (a device names the segment its
camera watches); those count with length 1 and the ``local`` class weight.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from roadsense.core.config import ConfigModel
from roadsense.proto.topics import is_identifier

RoadClass = Literal["motorway", "trunk", "primary", "secondary", "local"]

ROAD_CLASS_WEIGHT: dict[str, float] = {
    "motorway": 3.0,
    "trunk": 2.5,
    "primary": 2.0,
    "secondary": 1.5,
    "local": 1.0,
}
"""How much a segment's level counts in the city index, per metre, by road class."""


class DeviceConfig(ConfigModel):
    """A device of the fleet registry and its cameras."""

    id: str = Field(description="Device id (MQTT username, certificate CN).")
    cameras: list[str] = Field(description="Camera ids the device may report for.")


class SegmentConfig(ConfigModel):
    """One road segment of the city."""

    id: str = Field(description="Segment id, as devices name it in their camera config.")
    name: str = Field(description="Human name, e.g. 'Ring Rd northbound, exit 4-5'.")
    road_class: RoadClass = Field(
        default="local", description="motorway, trunk, primary, secondary or local."
    )
    length_m: float = Field(default=1.0, gt=0, description="Length in metres.")
    coordinates: list[tuple[float, float]] = Field(
        default_factory=list, description="WGS84 polyline as [[lat, lon], ...]."
    )
    direction: str = Field(default="", description="Direction of travel, e.g. 'northbound'.")
    cameras: list[str] = Field(
        default_factory=list,
        description="Cameras watching this segment as 'device/camera'; their reports count "
        "here whatever segment the device names.",
    )

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not is_identifier(value):
            raise ValueError("must be 1-64 letters, digits, '_', '.', '-'")
        return value

    @field_validator("coordinates")
    @classmethod
    def _wgs84(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for lat, lon in value:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"({lat}, {lon}) is not a WGS84 latitude/longitude")
        return value

    @property
    def weight(self) -> float:
        """Weight in the city index: length times the road-class weight."""
        return self.length_m * ROAD_CLASS_WEIGHT[self.road_class]


def unconfigured(segment_id: str) -> SegmentConfig:
    """Stand-in for a segment known only from reports."""
    return SegmentConfig(id=segment_id, name=segment_id)


LEVEL_BANDS = (("free", 2.0), ("light", 4.0), ("moderate", 6.0), ("heavy", 8.0), ("severe", 10.1))


def band(level: float) -> str:
    """Name of the 0-10 band a level falls in."""
    for name, upper in LEVEL_BANDS:  # a plain loop: called per segment for every answer
        if level < upper:
            return name
    return LEVEL_BANDS[-1][0]
