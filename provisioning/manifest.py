"""The fleet manifest: every roadside device, its site, cameras and hardware.

A TOML file (``fleet.toml``), or a CSV imported into one. The manifest is
the source of each device's edge configuration (bundles and enrollment).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from roadsense.core.config import ConfigModel, load_config
from roadsense.core.errors import ConfigError
from roadsense.core.roi import Roi, check_line, check_regions, check_roi, check_zone
from roadsense.proto.topics import is_identifier
from roadsense.provisioning.model_key import PUBLIC_FILE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

CLOUD_ACCOUNT = "roadsense-cloud"
"""CN of the cloud ingest's client certificate (its MQTT username and client id).

More cloud processes on one broker (ingest workers, tools) each get their own
account, ``roadsense-cloud-<name>``: the broker binds a client id to its CN.
"""
RESERVED_IDS = frozenset({CLOUD_ACCOUNT, "broker", "cloud-grpc"})
"""Certificate CNs of the servers and the cloud: never a device id."""


def is_cloud_account(name: str) -> bool:
    """True for ``roadsense-cloud`` and ``roadsense-cloud-<name>``: never a device id."""
    return is_identifier(name) and (
        name == CLOUD_ACCOUNT or (name.startswith(f"{CLOUD_ACCOUNT}-") and len(name) > 16)
    )


URL_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})

Hardware = Literal[
    "jetson-nano",
    "jetson-tx2",
    "jetson-xavier-nx",
    "jetson-agx-xavier",
    "jetson-orin-nano",
    "jetson-orin-nx",
    "jetson-agx-orin",
    "x86-64",
]


def _identifier(value: str) -> str:
    if not is_identifier(value):
        raise ValueError(
            "must be 1-64 letters, digits, '_', '.', '-', starting with one of the first two"
        )
    return value


def check_source(source: str) -> str:
    """``source`` if it is a camera URL, a USB index, a GStreamer pipeline or an absolute path."""
    if source.isdigit() or " ! " in source:
        return source
    if "://" in source:
        parts = urlsplit(source)
        if parts.scheme not in URL_SCHEMES:
            raise ValueError(
                f"URL scheme {parts.scheme!r} is not one of {', '.join(sorted(URL_SCHEMES))}"
            )
        if not parts.hostname:
            raise ValueError("URL has no host")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as err:
            raise ValueError(f"URL has a bad port: {err}") from err
        return source
    if source.startswith("/"):
        return source
    raise ValueError(
        "not a camera URL (rtsp://, http://...), USB index, GStreamer pipeline or absolute path"
    )


class BrokerEndpoint(ConfigModel):
    """Where devices reach the broker."""

    host: str = Field(description="Broker host name as devices resolve it (in its certificate).")
    port: int = Field(default=8883, ge=1, le=65535, description="Broker mTLS port.")


class Location(ConfigModel):
    """Where a device stands (WGS84)."""

    lat: float = Field(ge=-90, le=90, description="Latitude in degrees.")
    lon: float = Field(ge=-180, le=180, description="Longitude in degrees.")


class ManifestCamera(ConfigModel):
    """One camera of a device."""

    id: str = Field(description="Camera id, unique on its device.")
    source: str = Field(
        description="rtsp/http URL, USB index, GStreamer pipeline or absolute path."
    )
    segment_id: str = Field(description="Road segment the camera watches.")
    direction: str = Field(default="", description="Direction of travel seen, e.g. 'northbound'.")
    roi: Roi | None = Field(
        default=None,
        description="Region of interest as fractions of the frame: x, y, width, height; "
        "the edge classifies only this part of each frame.",
    )
    sample_hz: float = Field(default=2.0, gt=0, le=60, description="Frames per second classified.")
    zone: list[tuple[float, float]] | None = Field(
        default=None,
        description="Road zone the measurement counts in: 3 or more points [x, y] as fractions "
        "of the frame (default: the region of interest).",
    )
    counting_line: list[tuple[float, float]] | None = Field(
        default=None,
        description="Two points [x, y] (fractions of the frame) of a line whose crossings "
        "the device counts (at sample_hz 5 or more).",
    )
    blur: list[Roi] = Field(
        default_factory=list,
        description="Regions pixelated in this camera's snapshots, as fractions of the frame.",
    )

    _check_ids = field_validator("id", "segment_id")(_identifier)
    _check_source = field_validator("source")(check_source)
    _check_roi = field_validator("roi")(check_roi)
    _check_blur = field_validator("blur")(check_regions)
    _check_zone = field_validator("zone")(check_zone)
    _check_line = field_validator("counting_line")(check_line)


class ManifestDevice(ConfigModel):
    """One roadside device."""

    id: str = Field(description="Device id: certificate CN, MQTT username, topic level.")
    site: str = Field(description="Human name of the site, e.g. 'Main St / 5th Ave'.")
    location: Location | None = Field(default=None, description="Where the device stands.")
    hardware: Hardware = Field(default="jetson-orin-nano", description="Device model.")
    cameras: list[ManifestCamera] = Field(min_length=1, description="Cameras of the device.")

    @field_validator("id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        _identifier(value)
        if value in RESERVED_IDS or is_cloud_account(value):
            raise ValueError(f"{value!r} is reserved for a server or a cloud account")
        return value

    @model_validator(mode="after")
    def _unique_cameras(self) -> ManifestDevice:
        ids = [c.id for c in self.cameras]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"device {self.id!r}: duplicate camera ids: {', '.join(twice)}")
        return self


class FleetSettings(ConfigModel):
    """What all devices of the city share."""

    city: str = Field(description="City (or deployment) name.")
    broker: BrokerEndpoint = Field(description="The broker devices publish to.")
    segments: list[str] = Field(
        default_factory=list,
        description="The city's road segment ids; when given, every camera must name one.",
    )
    install_dir: str = Field(
        default="/etc/roadsense",
        description="Where a bundle is unpacked on the device (used by the systemd unit).",
    )
    allow_snapshots: bool = Field(
        default=False,
        description="Devices answer the 'snapshot' command (each camera's blur regions "
        "pixelated). Off: frames never leave a device.",
    )


class FleetManifest(ConfigModel):
    """The fleet: shared settings and every device."""

    fleet: FleetSettings = Field(description="Shared settings.")
    devices: list[ManifestDevice] = Field(default_factory=list, description="The devices.")

    @model_validator(mode="after")
    def _consistent(self) -> FleetManifest:
        ids = [d.id for d in self.devices]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"duplicate device ids: {', '.join(twice)}")
        if self.fleet.segments:
            known = set(self.fleet.segments)
            unknown = sorted(
                f"{d.id}/{c.id} -> {c.segment_id}"
                for d in self.devices
                for c in d.cameras
                if c.segment_id not in known
            )
            if unknown:
                raise ValueError(f"cameras on unknown segments: {', '.join(unknown)}")
        return self

    def device(self, device_id: str) -> ManifestDevice:
        """The device named ``device_id``."""
        for device in self.devices:
            if device.id == device_id:
                return device
        raise ConfigError(f"device {device_id!r} is not in the fleet manifest")


def load_manifest(path: Path) -> FleetManifest:
    """Read and validate a fleet manifest."""
    return load_config(FleetManifest, path)


def edge_config_toml(manifest: FleetManifest, device_id: str, *, model_key: bool = False) -> str:
    """The edge configuration of one device, certificate files beside it (and the fleet's
    model-signing public key, with ``model_key``, so it takes model updates)."""
    device = manifest.device(device_id)
    lines = [
        f"# RoadSense edge configuration of {device.id} ({device.site}), "
        f"from the {manifest.fleet.city} fleet manifest.",
        "# Relative paths are relative to this file's folder.",
        f"device_id = {_s(device.id)}",
        "",
        "[mqtt]",
        f"host = {_s(manifest.fleet.broker.host)}",
        f"port = {manifest.fleet.broker.port}",
        'protocol = "5"',
        "",
        "[mqtt.tls]",
        'ca_file = "ca.pem"',
        'cert_file = "device.pem"',
        'key_file = "device.key"',
        "",
        "[outbox]",
        'path = "outbox.sqlite"',
        "",
        "[privacy]",
        f"allow_snapshots = {'true' if manifest.fleet.allow_snapshots else 'false'}",
    ]
    if model_key:  # models are fetched over gRPC with the [mqtt.tls] certificate
        lines += ["", "[models]", f"public_key_file = {_s(PUBLIC_FILE)}"]
    for camera in device.cameras:
        lines += [
            "",
            "[[cameras]]",
            f"id = {_s(camera.id)}",
            f"source = {_s(camera.source)}",
            f"segment_id = {_s(camera.segment_id)}",
            f"sample_hz = {camera.sample_hz!r}",
        ]
        if camera.roi is not None:
            lines.append(f"roi = {_numbers(camera.roi)}")
        if camera.blur:
            lines.append(f"blur = [{', '.join(_numbers(region) for region in camera.blur)}]")
        for key in ("zone", "counting_line"):
            points = getattr(camera, key)
            if points:
                lines.append(f"{key} = [{', '.join(_numbers(point) for point in points)}]")
    return "\n".join(lines) + "\n"


def _numbers(values: tuple[float, ...]) -> str:
    """A TOML array of numbers."""
    return f"[{', '.join(repr(value) for value in values)}]"


def _s(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(value)


CSV_COLUMNS = (
    "device_id",
    "site",
    "lat",
    "lon",
    "hardware",
    "camera_id",
    "source",
    "segment_id",
    "direction",
    "roi",
)


def manifest_from_csv(csv_path: Path, city: str, broker_host: str, broker_port: int = 8883) -> str:
    """A manifest TOML from a CSV with one row per camera; validated before it is returned."""
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [
                c
                for c in ("device_id", "site", "camera_id", "source", "segment_id")
                if c not in (reader.fieldnames or [])
            ]
            if missing:
                raise ConfigError(f"{csv_path}: missing columns: {', '.join(missing)}")
            rows = list(reader)
    except OSError as err:
        raise ConfigError(f"{csv_path}: cannot read: {err.strerror}") from err
    devices: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        devices.setdefault(row["device_id"].strip(), []).append(row)
    lines = [
        "[fleet]",
        f"city = {_s(city)}",
        f"broker = {{ host = {_s(broker_host)}, port = {broker_port} }}",
    ]
    for device_id, device_rows in devices.items():
        first = device_rows[0]
        lines += ["", "[[devices]]", f"id = {_s(device_id)}", f"site = {_s(first['site'].strip())}"]
        if first.get("hardware", "").strip():
            lines.append(f"hardware = {_s(first['hardware'].strip())}")
        if first.get("lat", "").strip() and first.get("lon", "").strip():
            lines.append(
                f"location = {{ lat = {_number(first, 'lat', csv_path)}, "
                f"lon = {_number(first, 'lon', csv_path)} }}"
            )
        for row in device_rows:
            lines += [
                "",
                "[[devices.cameras]]",
                f"id = {_s(row['camera_id'].strip())}",
                f"source = {_s(row['source'].strip())}",
                f"segment_id = {_s(row['segment_id'].strip())}",
            ]
            if row.get("direction", "").strip():
                lines.append(f"direction = {_s(row['direction'].strip())}")
            if row.get("roi", "").strip():
                parts = row["roi"].replace(";", " ").split()
                lines.append(f"roi = [{', '.join(str(_float(p, csv_path)) for p in parts)}]")
    text = "\n".join(lines) + "\n"
    from roadsense.core.config import parse_config

    parse_config(FleetManifest, tomllib.loads(text), f"{csv_path} (as a manifest)")
    return text


def _float(value: str, path: Path) -> float:
    try:
        return float(value)
    except ValueError as err:
        raise ConfigError(f"{path}: {value!r} is not a number") from err


def _number(row: dict[str, str], key: str, path: Path) -> float:
    return _float(row[key].strip(), path)
