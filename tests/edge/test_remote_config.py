"""Remote configuration over a real broker: applied live, persisted, refused when invalid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadsense.core.mqtt import MqttConfig
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.capture.camera import CameraState
from roadsense.edge.commands.remote import apply_overrides, parse_config_command
from roadsense.edge.config import CameraConfig, ClassifierConfig, EdgeConfig, OutboxConfig
from roadsense.edge.runner import build_agent
from roadsense.models.shipped import PLACEHOLDER_CNN
from roadsense.proto.v1 import telemetry_pb2

from ..conftest import SAMPLE_VIDEO
from ..support.helpers import Operator, wait_until

pytestmark = pytest.mark.integration


def _config(mqtt: MqttConfig, tmp_path: Path) -> EdgeConfig:
    return EdgeConfig(
        device_id="remote-1",
        mqtt=mqtt,
        # The model does not matter here: the tiny placeholder keeps the agent light.
        classifier=ClassifierConfig(model=PLACEHOLDER_CNN),
        outbox=OutboxConfig(path=tmp_path / "outbox.sqlite"),
        cameras=[
            CameraConfig(id=cam, source=str(SAMPLE_VIDEO), segment_id=f"remote-{cam}", loop=True)
            for cam in ("cam1", "cam2")
        ],
    )


def _command(**fields: object) -> bytes:
    cameras = fields.pop("cameras", [])
    command = telemetry_pb2.ConfigCommand(schema_version=1, request_id="req", **fields)  # type: ignore[arg-type]
    for camera in cameras:  # type: ignore[attr-defined]
        command.cameras.add(**camera)
    return command.SerializeToString()


def _state(agent: EdgeAgent, camera: str) -> str:
    return next(c.state for c in agent.health().cameras if c.camera_id == camera)


def test_config_command_round_trip(mqtt_config: MqttConfig, tmp_path: Path) -> None:
    agent = build_agent(_config(mqtt_config, tmp_path))
    operator = Operator(mqtt_config, "remote-1")
    try:
        agent.start()
        assert wait_until(agent.publisher.is_connected)
        assert wait_until(lambda: _state(agent, "cam2") == CameraState.STREAMING.value)
        reply = operator.send(
            "config",
            _command(
                report_interval_s=1.5,
                window=3,
                cameras=[
                    {
                        "camera_id": "cam1",
                        "sample_hz": 4.0,
                        "roi": telemetry_pb2.Roi(x=0.0, y=0.5, width=1.0, height=0.5),
                    },
                    {"camera_id": "cam2", "enabled": False},
                ],
            ),
        )
        assert reply.ok, reply.error
        assert reply.request_id == "req"
        assert reply.command == "config"
        assert json.loads(reply.settings_json) == {
            "report_interval_s": 1.5,
            "window": 3,
            "cameras": {
                "cam1": {"sample_hz": 4.0, "enabled": True, "roi": [0.0, 0.5, 1.0, 0.5]},
                "cam2": {"sample_hz": 2.0, "enabled": False, "roi": None},
            },
        }
        assert wait_until(lambda: _state(agent, "cam2") == CameraState.DISABLED.value)
        assert agent.config.reports.interval_s == 1.5
        assert agent.config.cameras[0].roi == (0.0, 0.5, 1.0, 0.5)

        refusals = {
            "rate out of range": _command(cameras=[{"camera_id": "cam1", "sample_hz": 500.0}]),
            "unknown camera": _command(cameras=[{"camera_id": "cam9", "enabled": True}]),
            "roi outside": _command(
                cameras=[
                    {"camera_id": "cam1", "roi": telemetry_pb2.Roi(x=0.5, width=0.8, height=1)}
                ]
            ),
            "not protobuf": b"\xff\x00junk",
            "nothing": _command(),
        }
        reasons = {name: operator.send("config", payload) for name, payload in refusals.items()}
        assert not any(r.ok for r in reasons.values())
        assert "cameras[0].sample_hz: Input should be less than or equal to 60" in (
            reasons["rate out of range"].error
        )
        assert "unknown camera 'cam9'" in reasons["unknown camera"].error
        assert "cameras[0].roi" in reasons["roi outside"].error
        assert "must lie inside the frame" in reasons["roi outside"].error
        assert "not a ConfigCommand protobuf" in reasons["not protobuf"].error
        assert reasons["nothing"].error == "the command changes nothing"
        unknown = operator.send("reboot", b"")
        assert not unknown.ok
        assert unknown.error == "unknown command 'reboot'"
        # Refused commands changed nothing.
        assert json.loads(unknown.settings_json) == json.loads(reply.settings_json)
    finally:
        agent.stop()
        operator.close()

    # Persisted: the next start runs with the remote settings.
    restarted = build_agent(_config(mqtt_config, tmp_path))
    try:
        assert restarted.config.reports.interval_s == 1.5
        assert [c.enabled for c in restarted.config.cameras] == [True, False]
        assert restarted.config.cameras[0].sample_hz == 4.0
        assert restarted.config.cameras[0].roi == (0.0, 0.5, 1.0, 0.5)
    finally:
        restarted.stop()


def test_the_whole_frame_roi_clears_a_configured_one() -> None:
    request, overrides = parse_config_command(
        _command(cameras=[{"camera_id": "cam1", "roi": telemetry_pb2.Roi(width=1, height=1)}])
    )
    assert request == "req"
    assert overrides == {"cameras": {"cam1": {"roi": None}}}
    config = EdgeConfig(
        device_id="remote-1",
        cameras=[
            CameraConfig(
                id="cam1", source=str(SAMPLE_VIDEO), segment_id="s", roi=(0.1, 0.1, 0.5, 0.5)
            )
        ],
    )
    assert apply_overrides(config, overrides).cameras[0].roi is None
