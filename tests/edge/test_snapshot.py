"""Camera stills on request: off by default, privacy regions pixelated, over a real broker."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadsense.cloud.fleet.snapshots import request_snapshot
from roadsense.cloud.tools.snapshot import tool_account, write_explained
from roadsense.core.errors import CommandError, ConfigError
from roadsense.core.mqtt import MqttConfig, TlsConfig
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.capture.camera import CameraState
from roadsense.edge.commands.snapshot import encode_snapshot, parse_snapshot_command, pixelate
from roadsense.edge.config import (
    CameraConfig,
    ClassifierConfig,
    EdgeConfig,
    OutboxConfig,
    PrivacyConfig,
)
from roadsense.edge.runner import build_agent
from roadsense.models.card import load_card
from roadsense.models.detection.card import load_detector_card
from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR, PLACEHOLDER_CNN
from roadsense.proto.v1 import telemetry_pb2

from ..conftest import SAMPLE_VIDEO
from ..support.helpers import roadsense_cli, wait_until

TOP_HALF = (0.0, 0.0, 1.0, 0.5)


def _frame() -> np.ndarray:
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    ok, frame = capture.read()
    capture.release()
    assert ok
    return np.asarray(frame, dtype=np.uint8)


def _detail(image: np.ndarray) -> float:
    """Variance of the Laplacian: high for sharp texture, ~0 for flat blocks."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def test_pixelate_touches_only_its_regions_and_leaves_coarse_blocks() -> None:
    frame = _frame()  # 320x240
    out = pixelate(frame, [(0.5, 0.5, 0.5, 0.5)])
    assert out is not frame
    np.testing.assert_array_equal(out[:120], frame[:120])
    np.testing.assert_array_equal(out[:, :160], frame[:, :160])
    region = out[120:, 160:]
    # At most 12 blocks along the longer side: 12 x 9 distinct colours at most.
    assert len(np.unique(region.reshape(-1, 3), axis=0)) <= 12 * 9
    assert _detail(region) < _detail(frame[120:, 160:]) / 5


def test_snapshots_are_scaled_to_the_width_limit() -> None:
    jpeg, width, height = encode_snapshot(_frame(), [], max_width=160, jpeg_quality=80)
    assert (width, height) == (160, 120)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape == (120, 160, 3)
    _, width, height = encode_snapshot(_frame(), [], max_width=640, jpeg_quality=80)
    assert (width, height) == (320, 240)  # never scaled up


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (telemetry_pb2.SnapshotCommand(schema_version=9, camera_id="c"), "schema_version 9"),
        (telemetry_pb2.SnapshotCommand(schema_version=1), "camera_id is missing"),
        (telemetry_pb2.SnapshotCommand(schema_version=1, camera_id="c", max_width=4), "too small"),
    ],
)
def test_bad_snapshot_commands_are_named(
    command: telemetry_pb2.SnapshotCommand, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        parse_snapshot_command(command.SerializeToString())
    with pytest.raises(CommandError, match="not a SnapshotCommand"):
        parse_snapshot_command(b"\xff\x00junk")


def test_blur_regions_are_checked_like_the_roi() -> None:
    with pytest.raises(ValueError, match="must lie inside the frame"):
        CameraConfig(id="c", source="0", segment_id="s", blur=[(0.5, 0.0, 0.9, 1.0)])


def _config(mqtt: MqttConfig, tmp_path: Path, allow: bool) -> EdgeConfig:
    return EdgeConfig(
        device_id="snap-1",
        mqtt=mqtt,
        classifier=ClassifierConfig(model=PLACEHOLDER_CNN),
        outbox=OutboxConfig(path=tmp_path / "outbox.sqlite"),
        privacy=PrivacyConfig(allow_snapshots=allow, snapshot_max_width=400),
        cameras=[
            CameraConfig(
                id="cam1",
                source=str(SAMPLE_VIDEO),
                segment_id="seg-snap",
                loop=True,
                roi=(0.0, 0.25, 1.0, 0.75),
                blur=[TOP_HALF],
            )
        ],
    )


@pytest.fixture
def device(mqtt_config: MqttConfig, tmp_path: Path) -> Iterator[EdgeAgent]:
    agent = build_agent(_config(mqtt_config, tmp_path, allow=True))
    agent.start()
    try:
        assert wait_until(agent.publisher.is_connected)
        assert wait_until(lambda: agent.health().cameras[0].state == CameraState.STREAMING.value)
        yield agent
    finally:
        agent.stop()


@pytest.mark.integration
def test_a_snapshot_arrives_with_its_privacy_regions_pixelated(
    device: EdgeAgent, mqtt_config: MqttConfig
) -> None:
    still = request_snapshot(mqtt_config, "snap-1", "cam1", timeout_s=10)
    assert (still.device_id, still.camera_id) == ("snap-1", "cam1")
    assert (still.width, still.height) == (320, 240)
    assert still.blurred_regions == 1
    assert still.HasField("roi")
    assert (still.roi.x, still.roi.y, still.roi.width, still.roi.height) == (0.0, 0.25, 1.0, 0.75)
    image = cv2.imdecode(np.frombuffer(still.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (240, 320, 3)
    # The blurred top half carries far less detail than the untouched bottom half.
    assert _detail(image[:112]) < _detail(image[128:]) / 5
    narrow = request_snapshot(mqtt_config, "snap-1", "cam1", max_width=100, timeout_s=10)
    assert (narrow.width, narrow.height) == (100, 75)
    with pytest.raises(CommandError, match="unknown camera 'cam9'"):
        request_snapshot(mqtt_config, "snap-1", "cam9", timeout_s=10)
    # Every still that left the device is counted in its health (the refusal is not).
    assert device.health().snapshots_sent == 2


@pytest.mark.integration
def test_snapshots_are_refused_unless_the_device_allows_them(
    mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    agent = build_agent(_config(mqtt_config, tmp_path, allow=False))
    agent.start()
    try:
        assert wait_until(agent.publisher.is_connected)
        with pytest.raises(CommandError, match=r"snapshots are off on this device"):
            request_snapshot(mqtt_config, "snap-1", "cam1", timeout_s=10)
    finally:
        agent.stop()
    with pytest.raises(CommandError, match="did not answer within 1 s"):
        request_snapshot(mqtt_config, "snap-1", "cam1", timeout_s=1)
    with socket.socket() as probe:  # a port with no broker behind it
        probe.bind(("127.0.0.1", 0))
        nowhere = mqtt_config.model_copy(update={"port": probe.getsockname()[1]})
    with pytest.raises(CommandError, match=r"127\.0\.0\.1:\d+: could not subscribe within 1 s"):
        request_snapshot(nowhere, "snap-1", "cam1", timeout_s=1)


def _cloud_toml(mqtt_config: MqttConfig, tmp_path: Path) -> Path:
    """A cloud configuration for the snapshot tool: the test broker and a store."""
    config = tmp_path / "cloud.toml"
    config.write_text(
        f'[mqtt]\nhost = "{mqtt_config.host}"\nport = {mqtt_config.port}\n'
        f'[store]\npath = "{tmp_path / "city.sqlite"}"\n'
    )
    return config


@pytest.mark.integration
def test_cli_writes_the_image_with_the_roi_drawn(
    device: EdgeAgent, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    config = _cloud_toml(mqtt_config, tmp_path)
    out = tmp_path / "cam1.png"
    result = roadsense_cli(
        "cloud", "snapshot", "--config", str(config), "--device", "snap-1",
        "--camera", "cam1", "--out", str(out), "--draw-roi", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["roi"] == [0.0, 0.25, 1.0, 0.75]
    assert facts["blurred_regions"] == 1
    image = cv2.imread(str(out))
    assert image is not None
    assert image.shape == (240, 320, 3)
    # The ROI's top edge (y = 60) is drawn in yellow across the image.
    row = image[60, 20:300].astype(int)
    assert (row[:, 2] > 200).all()  # red
    assert (row[:, 1] > 200).all()  # green
    assert (row[:, 0] < 80).all()  # little blue
    refused = roadsense_cli(
        "cloud", "snapshot", "--config", str(config), "--device", "snap-1",
        "--camera", "nope", "--out", str(tmp_path / "x.jpg"), "--timeout", "5",
    )  # fmt: skip
    assert refused.returncode == 1
    assert "unknown camera 'nope'" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.integration
def test_cli_explains_the_still_with_the_cloud_model_heat_map(
    device: EdgeAgent, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    config = _cloud_toml(mqtt_config, tmp_path)
    out = tmp_path / "cam1-explained.png"
    result = roadsense_cli(
        "cloud", "snapshot", "--config", str(config), "--device", "snap-1",
        "--camera", "cam1", "--out", str(out), "--explain", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    card = load_card(DEFAULT_CNN)
    assert facts["model_version"] == card.version
    assert facts["level"] in card.labels
    assert 0.0 < facts["confidence"] <= 1.0
    image = cv2.imread(str(out))
    assert image is not None
    assert image.shape == (240, 320, 3)
    assert (image[60, 20:300] > 200).all()  # the ROI's top edge, outlined in white


@pytest.mark.integration
def test_cli_measures_the_still_and_draws_the_evidence(
    device: EdgeAgent, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    config = _cloud_toml(mqtt_config, tmp_path)
    out = tmp_path / "cam1-measured.jpg"
    result = roadsense_cli(
        "cloud", "snapshot", "--config", str(config), "--device", "snap-1",
        "--camera", "cam1", "--out", str(out), "--measure", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["detector_version"] == load_detector_card(DEFAULT_DETECTOR).version
    assert facts["vehicles"] >= 0  # the clip's road is empty at times
    assert 0.0 <= facts["occupancy"] <= 1.0
    image = cv2.imread(str(out))
    assert image is not None
    assert image.shape == (240, 320, 3)
    # The figures are written in a black band across the top of the still.
    assert (image[0:3].max(axis=2) < 60).mean() > 0.9


def test_the_heat_map_is_drawn_inside_the_region_the_model_saw(tmp_path: Path) -> None:
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    ok, frame = capture.read()
    capture.release()
    assert ok
    ok, jpeg = cv2.imencode(".jpg", frame)
    still = telemetry_pb2.Snapshot(
        jpeg=jpeg.tobytes(), roi=telemetry_pb2.Roi(x=0.0, y=0.5, width=1.0, height=0.5)
    )
    facts = write_explained(still, tmp_path / "heat.png", DEFAULT_CNN)
    assert facts["level"] in load_card(DEFAULT_CNN).labels
    drawn_image = cv2.imread(str(tmp_path / "heat.png"))
    plain_image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    assert drawn_image is not None
    assert plain_image is not None
    drawn, plain = drawn_image.astype(int), plain_image.astype(int)
    above, below = np.abs(drawn - plain)[:119], np.abs(drawn - plain)[121:]
    assert above.max() == 0  # outside the region: the still as the device sent it
    # inside: the map's colours over the part of the road where the evidence stands above
    # its mean (measured: 0.17 of the region's pixels changed by more than 30)
    assert (below.max(axis=2) > 30).mean() > 0.1


def test_a_config_file_may_not_blur_outside_the_frame(tmp_path: Path) -> None:
    from roadsense.core.config import load_config

    config = tmp_path / "edge.toml"
    config.write_text(
        'device_id = "d"\n[privacy]\nallow_snapshots = true\n[[cameras]]\nid = "c"\n'
        'source = "0"\nsegment_id = "s"\nblur = [[0.0, 0.0, 1.0, 0.5], [0.9, 0.0, 0.2, 1.0]]\n'
    )
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.blur: .*inside the frame"):
        load_config(EdgeConfig, config)


def test_a_cloud_tool_never_borrows_the_ingest_certificate(tmp_path: Path) -> None:
    plain = MqttConfig(port=1883)
    assert tool_account(plain, None, None) == plain
    fleet = MqttConfig(
        port=8883,
        tls=TlsConfig(
            ca_file=tmp_path / "ca.pem", cert_file=tmp_path / "cloud.pem", key_file=tmp_path / "k"
        ),
    )
    with pytest.raises(CommandError, match="would displace the cloud ingest"):
        tool_account(fleet, None, None)
    with pytest.raises(CommandError, match="both --cert-file and --key-file"):
        tool_account(fleet, tmp_path / "tools.pem", None)
    own = tool_account(fleet, tmp_path / "tools.pem", tmp_path / "tools.key")
    assert own.tls is not None
    assert (own.tls.cert_file, own.tls.key_file) == (tmp_path / "tools.pem", tmp_path / "tools.key")
