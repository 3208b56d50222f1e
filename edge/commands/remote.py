"""Remote configuration: validate a ``config`` command and work out the new settings.

A command changes the report cadence and window, and per camera the sampling
rate, the enabled flag and the region of interest. It is checked by the same pydantic models as the
configuration file, so a command can never produce a configuration the file
could not. Accepted settings are persisted and re-applied at the next start.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from pydantic import ValidationError

from roadsense.core.config import describe_validation_error
from roadsense.core.errors import CommandError
from roadsense.edge.config import EdgeConfig
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.v1 import telemetry_pb2

Overrides = dict[str, Any]
"""{"report_interval_s": ..., "window": ..., "cameras": {id: {"sample_hz": ..., "enabled": ...,
"roi": [x, y, w, h] or None}}}"""


CommandT = TypeVar(
    "CommandT",
    telemetry_pb2.ConfigCommand,
    telemetry_pb2.SnapshotCommand,
    telemetry_pb2.ModelUpdate,
)


def decode_command(kind: type[CommandT], payload: bytes) -> CommandT:
    """A command message of ``kind`` at this schema version; CommandError naming what is not."""
    try:
        command = kind.FromString(payload)
    except DecodeError as err:
        raise CommandError(f"payload is not a {kind.__name__} protobuf: {err}") from err
    if command.schema_version != SCHEMA_VERSION:
        raise CommandError(
            f"schema_version {command.schema_version} is not supported (expected {SCHEMA_VERSION})"
        )
    return command


def parse_config_command(payload: bytes) -> tuple[str, Overrides]:
    """Decode a ConfigCommand into (request id, overrides)."""
    command = decode_command(telemetry_pb2.ConfigCommand, payload)
    overrides: Overrides = {}
    if command.HasField("report_interval_s"):
        overrides["report_interval_s"] = command.report_interval_s
    if command.HasField("window"):
        overrides["window"] = command.window
    cameras: dict[str, dict[str, Any]] = {}
    for camera in command.cameras:
        if camera.camera_id in cameras:
            raise CommandError(f"camera {camera.camera_id!r} appears twice")
        settings: dict[str, Any] = {}
        if camera.HasField("sample_hz"):
            settings["sample_hz"] = camera.sample_hz
        if camera.HasField("enabled"):
            settings["enabled"] = camera.enabled
        if camera.HasField("roi"):
            roi = [camera.roi.x, camera.roi.y, camera.roi.width, camera.roi.height]
            settings["roi"] = None if roi == [0.0, 0.0, 1.0, 1.0] else roi
        cameras[camera.camera_id] = settings
    if cameras:
        overrides["cameras"] = cameras
    if not overrides:
        raise CommandError("the command changes nothing")
    return command.request_id, overrides


def merge_overrides(old: Overrides, new: Overrides) -> Overrides:
    """Overrides persisted so far, updated by a new command."""
    merged: Overrides = json.loads(json.dumps(old))
    for key in ("report_interval_s", "window"):
        if key in new:
            merged[key] = new[key]
    for camera_id, settings in new.get("cameras", {}).items():
        merged.setdefault("cameras", {}).setdefault(camera_id, {}).update(settings)
    return merged


def apply_overrides(config: EdgeConfig, overrides: Overrides) -> EdgeConfig:
    """The file configuration with overrides applied, validated like the file itself."""
    data = config.model_dump()
    if "report_interval_s" in overrides:
        data["reports"]["interval_s"] = overrides["report_interval_s"]
    if "window" in overrides:
        data["reports"]["window"] = overrides["window"]
    known = {camera["id"]: camera for camera in data["cameras"]}
    for camera_id, settings in overrides.get("cameras", {}).items():
        if camera_id not in known:
            raise CommandError(
                f"unknown camera {camera_id!r} (this device has {', '.join(sorted(known))})"
            )
        known[camera_id].update(settings)
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as err:
        raise CommandError(describe_validation_error("command", err)) from err


def settings_summary(config: EdgeConfig) -> str:
    """The remotely changeable settings in force, as JSON."""
    return json.dumps(
        {
            "report_interval_s": config.reports.interval_s,
            "window": config.reports.window,
            "cameras": {
                c.id: {
                    "sample_hz": c.sample_hz,
                    "enabled": c.enabled,
                    "roi": list(c.roi) if c.roi else None,
                }
                for c in config.cameras
            },
        },
        sort_keys=True,
    )
