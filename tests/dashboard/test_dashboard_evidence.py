"""Evidence stills in the dashboard: a camera's snapshot asked of the real device over the
real broker, its vehicles boxed by the cloud's detector, and every refusal named."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import ClassifyConfig, CloudConfig, DashboardConfig
from roadsense.cloud.dashboard.evidence import evidence_stills
from roadsense.core.mqtt import MqttConfig, TlsConfig
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.capture.camera import CameraState
from roadsense.edge.config import (
    CameraConfig,
    ClassifierConfig,
    EdgeConfig,
    OutboxConfig,
    PrivacyConfig,
    ReportConfig,
)
from roadsense.edge.measure.config import MeasureConfig
from roadsense.edge.runner import build_agent
from roadsense.models.detection.card import load_detector_card
from roadsense.models.detection.still import ZONE
from roadsense.models.shipped import DEFAULT_DETECTOR, PLACEHOLDER_CNN

from ..conftest import SAMPLE_VIDEO
from ..support.dashboard_support import Client, dashboard_config
from ..support.helpers import running_cloud, wait_until

pytestmark = pytest.mark.integration

ROI = (0.0, 0.25, 1.0, 0.75)


def evidence_config(base: CloudConfig, timeout_s: float = 10.0) -> CloudConfig:
    """The dashboard test cloud with evidence stills on and the shipped detector."""
    config = dashboard_config(base)
    return config.model_copy(
        update={
            "dashboard": config.dashboard.model_copy(
                update={"evidence": True, "evidence_timeout_s": timeout_s}
            ),
            "classify": ClassifyConfig(detector=DEFAULT_DETECTOR),
        }
    )


def evidence_agent(
    mqtt: MqttConfig, tmp_path: Path, allow: bool, measure: bool = False
) -> EdgeAgent:
    """A started device whose camera watches dash-main (snapshots allowed or not; with
    ``measure``, it reports measurements, so the segment panel lists the camera)."""
    config = EdgeConfig(
        device_id="ev-1",
        mqtt=mqtt,
        classifier=ClassifierConfig(model=PLACEHOLDER_CNN),
        measure=MeasureConfig(enabled=measure),
        reports=ReportConfig(window=1, interval_s=0.5),
        outbox=OutboxConfig(path=tmp_path / f"outbox-{allow}.sqlite"),
        privacy=PrivacyConfig(allow_snapshots=allow, snapshot_max_width=400),
        cameras=[
            CameraConfig(
                id="cam1",
                source=str(SAMPLE_VIDEO),
                segment_id="dash-main",
                loop=True,
                roi=ROI,
                blur=[(0.0, 0.0, 1.0, 0.2)],
            )
        ],
    )
    agent = build_agent(config)
    agent.start()
    assert wait_until(agent.publisher.is_connected)
    assert wait_until(lambda: agent.health().cameras[0].state == CameraState.STREAMING.value)
    return agent


@pytest.fixture
def cloud(cloud_config: CloudConfig) -> Iterator[CloudService]:
    with running_cloud(evidence_config(cloud_config)) as service:
        yield service


def _client(cloud: CloudService) -> Client:
    assert cloud.dashboard is not None
    client = Client(cloud.dashboard.url)
    assert client.login() == 303
    return client


def test_a_camera_still_comes_with_its_vehicles_boxed_and_its_figures(
    cloud: CloudService, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    client = _client(cloud)
    assert client.json("/api/segments/dash-main")["evidence"] is True
    agent = evidence_agent(mqtt_config, tmp_path, allow=True)
    try:
        status, headers, body = client.request("/api/evidence/ev-1/cam1")
    finally:
        agent.stop()
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "image/png"
    assert headers["Cache-Control"] == "no-store"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (240, 320, 3)  # the still as the device sent it
    assert int(headers["X-Vehicles"]) >= 0
    assert 0.0 <= float(headers["X-Occupancy"]) <= 1.0
    assert headers["X-Detector-Version"] == load_detector_card(DEFAULT_DETECTOR).version
    assert int(headers["X-Blurred-Regions"]) == 1  # the device's privacy rules held
    assert int(headers["X-Capture-Time-Ms"]) > 0
    # The region of interest is outlined: its top edge (y = 60) in the zone colour.
    distance = np.abs(image[58:63, 40:280].astype(int) - np.array(ZONE)).sum(axis=2)
    assert (distance.min(axis=0) < 60).mean() > 0.9  # in every column, one row of 58-62
    # The figures are written in a black band at the top.
    assert image[:8].mean() < image[100:140].mean()


def test_refusals_and_bad_requests_are_named(
    cloud: CloudService, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    client = _client(cloud)
    agent = evidence_agent(mqtt_config, tmp_path, allow=False)
    try:
        status, _, body = client.request("/api/evidence/ev-1/cam1")
    finally:
        agent.stop()
    assert status == 502
    assert "snapshots are off on this device" in json.loads(body)["error"]
    status, _, body = client.request("/api/evidence/ev-1/cam%2B1")
    assert status == 400
    assert json.loads(body)["error"] == "not a camera id: 'cam+1'"


def test_a_device_that_does_not_answer_is_named(cloud_config: CloudConfig) -> None:
    with running_cloud(evidence_config(cloud_config, timeout_s=1.0)) as service:
        status, _, body = _client(service).request("/api/evidence/nobody/cam1")
    assert status == 502
    assert "device 'nobody' did not answer within 1 s" in json.loads(body)["error"]


def test_evidence_is_off_unless_configured_and_says_why(
    cloud_config: CloudConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with running_cloud(dashboard_config(cloud_config)) as service:
        client = _client(service)
        assert client.json("/api/segments/dash-main")["evidence"] is False
        status, _, body = client.request("/api/evidence/ev-1/cam1")
    assert status == 404
    assert "evidence stills are off" in json.loads(body)["error"]
    caplog.set_level(logging.WARNING)
    wanted = DashboardConfig(enabled=True, evidence=True)
    assert evidence_stills(cloud_config.model_copy(update={"dashboard": wanted}), None) is None
    assert "they need the cloud's detector" in caplog.text
    fleet_broker = cloud_config.mqtt.model_copy(
        update={
            "tls": TlsConfig(
                ca_file=Path("ca.pem"), cert_file=Path("c.pem"), key_file=Path("c.key")
            )
        }
    )
    config = cloud_config.model_copy(update={"dashboard": wanted, "mqtt": fleet_broker})
    assert evidence_stills(config, object()) is None  # type: ignore[arg-type]
    assert "needs an account of its own" in caplog.text
