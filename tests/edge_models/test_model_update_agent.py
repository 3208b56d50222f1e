"""The edge agent acting on ModelUpdate commands: real Mosquitto, a real gRPC fleet server
(mutual TLS) serving the registry, real files, agents on the shipped clip.

The running model is the placeholder CNN; the updates are small real ONNX models built
in tests/support/model_releases.py (good, wrong input shape, NaN outputs, ~10x slower).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadsense.cloud.releases.delivery import model_update
from roadsense.core.mqtt import MqttConfig
from roadsense.core.publisher import MemoryPublisher
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.config import (
    CameraConfig,
    ClassifierConfig,
    EdgeConfig,
    ModelUpdateConfig,
    OutboxConfig,
    ReportConfig,
)
from roadsense.edge.outbox import Outbox
from roadsense.edge.runner import build_agent, startup_classifier
from roadsense.edge.updates.state import load_state
from roadsense.models.card import load_card
from roadsense.models.shipped import PLACEHOLDER_CNN
from roadsense.models.signing import sign_model
from roadsense.proto.topics import health_topic, reply_topic
from roadsense.proto.v1 import telemetry_pb2

from ..conftest import SAMPLE_VIDEO
from ..support.fleet_server import Fleet, fleet_server
from ..support.helpers import Operator, wait_until
from ..support.model_releases import write_model

pytestmark = pytest.mark.integration

OLD = load_card(PLACEHOLDER_CNN).version


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with fleet_server(tmp_path, devices=("dev-1", "dev-2", "dev-3")) as fleet:
        fleet.publish(write_model(tmp_path / "export" / "good", "2.0.0"), "2.0.0")
        fleet.publish(PLACEHOLDER_CNN, OLD)  # what a rollback sends the devices back to
        yield fleet


def edge_config(
    tmp_path: Path, fleet: Fleet, mqtt: MqttConfig, device: str = "dev-1", **models: object
) -> EdgeConfig:
    folder = tmp_path / device
    settings = {
        "public_key_file": fleet.public_key_file(),
        "grpc_tls": fleet.tls(device),
        "folder": folder / "models",
        "latency_factor": 3.0,
        "frames_wait_s": 20.0,
        **models,
    }
    return EdgeConfig(
        device_id=device,
        mqtt=mqtt,
        classifier=ClassifierConfig(model=PLACEHOLDER_CNN),
        reports=ReportConfig(window=3, interval_s=0.5),
        # No cloud ingests here: the broker's PUBACK is the last hop.
        outbox=OutboxConfig(path=folder / "outbox.sqlite", delivery="broker"),
        health_interval_s=0.5,
        models=ModelUpdateConfig.model_validate(settings),
        cameras=[
            CameraConfig(
                id=cam, source=str(SAMPLE_VIDEO), segment_id=f"seg-{cam}", sample_hz=10, loop=True
            )
            for cam in ("cam1", "cam2")
        ],
    )


def settings_of(reply: telemetry_pb2.CommandReply) -> dict[str, object]:
    settings: dict[str, object] = json.loads(reply.settings_json)
    return settings


def _replies(publisher: MemoryPublisher, device: str) -> list[telemetry_pb2.CommandReply]:
    return [
        telemetry_pb2.CommandReply.FromString(m.payload)
        for m in publisher.messages
        if m.topic == reply_topic(device, "model")
    ]


def _reports(publisher: MemoryPublisher) -> list[telemetry_pb2.CongestionReport]:
    return [
        telemetry_pb2.CongestionReport.FromString(m.payload)
        for m in publisher.messages
        if m.topic.endswith("/congestion")
    ]


def test_a_swap_loses_no_frame_or_report_and_a_rollback_downloads_nothing(
    fleet: Fleet, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    config = edge_config(tmp_path, fleet, mqtt_config)
    publisher = MemoryPublisher()
    agent = EdgeAgent(config, startup_classifier(config), publisher, Outbox(config.outbox))
    agent.start()
    try:
        assert wait_until(lambda: agent.stats.reports_created >= 4)
        agent.submit_model(fleet.update("2.0.0", "req-1", rollout_id="r-1"))
        assert wait_until(lambda: len(_replies(publisher, "dev-1")) == 1, 60)
        (reply,) = _replies(publisher, "dev-1")
        assert (reply.ok, reply.error, reply.request_id, reply.command) == (
            True,
            "",
            "req-1",
            "model",
        )
        size = fleet.offer("2.0.0").size
        settings = settings_of(reply)
        assert settings["model_version"] == "2.0.0"
        assert settings["previous_version"] == OLD
        assert settings["rollout_id"] == "r-1"
        assert settings["bytes_downloaded"] == size
        assert agent.classifier.card.version == "2.0.0"
        swapped_at = agent.stats.reports_created
        assert wait_until(lambda: agent.stats.reports_created >= swapped_at + 4)

        # Back to the placeholder, as a rollback does: it is held, so nothing is fetched.
        calls = len(fleet.servicer.calls)
        agent.submit_model(fleet.update(OLD, "req-2", rollout_id="r-1"))
        assert wait_until(lambda: len(_replies(publisher, "dev-1")) == 2, 60)
        back = _replies(publisher, "dev-1")[1]
        assert back.ok, back.error
        assert settings_of(back)["model_version"] == OLD
        assert settings_of(back)["previous_version"] == "2.0.0"
        assert settings_of(back)["bytes_downloaded"] == 0
        assert len(fleet.servicer.calls) == calls
        assert agent.updater.bytes_downloaded == size
        rolled_at = agent.stats.reports_created
        assert wait_until(lambda: agent.stats.reports_created >= rolled_at + 4)
        health = agent.health()
        assert (health.model_version, health.previous_model_version) == (OLD, "2.0.0")
        assert health.model_update_error == ""
    finally:
        agent.stop_capture()
        assert agent.flush(10.0)
        agent.stop()

    _check_nothing_lost(agent, publisher)
    state = load_state(config.models.folder)
    assert (state.current and state.current.version, state.previous and state.previous.version) == (
        OLD,
        "2.0.0",
    )
    assert state.pending == b""
    # The next start comes up on the model in force.
    assert startup_classifier(config).card.version == OLD


def _check_nothing_lost(agent: EdgeAgent, publisher: MemoryPublisher) -> None:
    """Every report numbered without a gap, every sampled frame classified, and reports
    naming the model that classified their frames: old, new, old, never mixed."""
    reports = _reports(publisher)
    assert [r.seq for r in reports] == list(range(1, len(reports) + 1))
    assert len(reports) == agent.stats.reports_created
    assert agent.stats.reports_lost == 0
    assert agent.stats.frames_sampled == agent.stats.frames_classified
    assert agent.stats.model_swaps == 2
    versions = [r.model_version for r in reports]
    runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
    assert runs == [OLD, "2.0.0", OLD]
    for report in reports:
        assert abs(sum(report.probabilities) - 1.0) < 1e-4
    health = [
        telemetry_pb2.DeviceHealth.FromString(m.payload)
        for m in publisher.messages
        if m.topic == health_topic("dev-1")
    ]
    assert "2.0.0" in {h.model_version for h in health}


def _signed_with(fleet: Fleet, version: str, signature: bytes) -> bytes:
    command = telemetry_pb2.ModelUpdate.FromString(fleet.update(version, "unsigned"))
    command.signature = signature
    return command.SerializeToString()


def _resigned(fleet: Fleet, version: str) -> bytes:
    model = fleet.store.model(version)
    assert model is not None
    other = Ed25519PrivateKey.generate()
    signature = sign_model(other, model.sha256, model.size, version, model.card_sha256)
    signed = dataclasses.replace(model, signature=signature)
    command = model_update(signed, "resigned", grpc_address=fleet.address)
    return command.SerializeToString()


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_refused_updates_say_why_and_the_device_stays_on_its_model(
    fleet: Fleet, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    export = tmp_path / "export"
    for version, kind in (("3.0-shape", "wrong_shape"), ("3.0-nan", "nan"), ("3.0-slow", "slow")):
        fleet.publish(write_model(export / kind, version, kind), version)  # type: ignore[arg-type]
    fleet.publish(
        write_model(export / "tampered", "3.0-tampered", pad_bytes=50_000), "3.0-tampered"
    )
    fleet.publish(write_model(export / "card", "3.0-card", seed=2), "3.0-card")
    _tamper(fleet.registry / "3.0-tampered" / "city.onnx")
    card = fleet.registry / "3.0-card" / "city.card.json"
    card.write_text(card.read_text().replace("test model", "evil model"))

    config = edge_config(tmp_path, fleet, mqtt_config)
    agent = build_agent(config)
    operator = Operator(mqtt_config, "dev-1")
    try:
        agent.start()
        assert wait_until(agent.publisher.is_connected)
        assert wait_until(lambda: agent.stats.frames_classified >= 8)
        refusals = {
            "command": _signed_with(fleet, "2.0.0", b""),
            "unsigned": _signed_with(fleet, "2.0.0", bytes(64)),
            "re-signed": _resigned(fleet, "2.0.0"),
            "tampered": fleet.update("3.0-tampered", "tampered"),
            "card": fleet.update("3.0-card", "card"),
            "shape": fleet.update("3.0-shape", "shape"),
            "nan": fleet.update("3.0-nan", "nan"),
            "slow": fleet.update("3.0-slow", "slow"),
        }
        replies = {}
        for name, payload in refusals.items():
            before = len(fleet.servicer.onnx_calls())
            replies[name] = operator.send("model", payload, timeout_s=60)
            fetched = fleet.servicer.onnx_calls()[before:]
            if name in ("command", "unsigned", "re-signed"):
                assert fetched == [], f"{name}: bytes were fetched before the signature check"
            assert agent.classifier.card.version == OLD, name
            assert agent.health().model_update_error == replies[name].error
    finally:
        agent.stop()
        operator.close()
    errors = {name: reply.error for name, reply in replies.items()}
    assert not any(reply.ok for reply in replies.values()), errors
    assert errors["command"].startswith("command: "), errors
    assert errors["unsigned"].startswith("signature: "), errors
    assert errors["re-signed"].startswith("signature: "), errors
    assert "does not verify with the fleet's key" in errors["re-signed"]
    assert errors["tampered"].startswith("sha256: "), errors
    assert errors["card"].startswith("card: "), errors
    assert errors["shape"].startswith("load: "), errors
    assert "input shape" in errors["shape"]
    assert errors["nan"].startswith("self_test: "), errors
    assert "not finite" in errors["nan"]
    assert errors["slow"].startswith("latency: "), errors
    for name, reply in replies.items():
        settings = settings_of(reply)
        assert settings["model_version"] == OLD, name
        assert settings["previous_version"] is None, name
        assert settings["requested_version"], name
    assert replies["tampered"].request_id == "tampered"
    # Nothing refused is kept as a release, and the tampered bytes are gone.
    models = config.models.folder
    assert [p.name for p in models.iterdir() if p.is_dir()] == []
    assert not (models / "3.0-tampered.onnx.partial").exists()
    assert load_state(models).current is None
