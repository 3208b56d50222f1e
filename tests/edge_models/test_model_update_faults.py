"""Model updates under faults: SIGKILL mid-download and at every step of the swap, a device
offline when the update is sent, a device short of disk. Real `roadsense edge run`
processes, real Mosquitto, a real gRPC fleet server (mTLS), real files."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roadsense.core.mqtt import MqttConfig
from roadsense.core.publisher import MemoryPublisher
from roadsense.core.timeutil import now_ms
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.config import EdgeConfig
from roadsense.edge.outbox import Outbox
from roadsense.edge.runner import build_agent, startup_classifier
from roadsense.edge.updates.download import partial_path
from roadsense.edge.updates.state import ModelState, load_state, save_state
from roadsense.harness.broker import RunningBroker
from roadsense.models.shipped import PLACEHOLDER_CNN
from roadsense.proto.topics import reply_topic
from roadsense.proto.v1 import telemetry_pb2

from ..conftest import SAMPLE_VIDEO
from ..support.fleet_server import Fleet, fleet_server
from ..support.helpers import Operator, stop_process, wait_until
from ..support.model_releases import write_model
from .test_model_update_agent import OLD, edge_config, settings_of

pytestmark = pytest.mark.integration

SIZE = 2_000_000
CHUNK = 16 * 1024

# `roadsense edge run` with os.replace counted: the process SIGKILLs itself just before
# the replace number argv[1] (0: never), so each step of an update can be cut in turn.
KILLER = """
import os, signal, sys
kill_at, calls, real = int(sys.argv[1]), [0], os.replace
def replace(src, dst, *args, **kwargs):
    calls[0] += 1
    print(f"os.replace {calls[0]}: {src} -> {dst}", file=sys.stderr, flush=True)
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = replace
from roadsense.cli.main import main
sys.exit(main(["edge", "run", "--config", sys.argv[2]]))
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    devices = ("kill-dl", "kill-swap", "offline-1", "full-1")
    with fleet_server(tmp_path, devices=devices, revoked=(), chunk_bytes=CHUNK) as fleet:
        fleet.publish(write_model(tmp_path / "export", "2.0.0", pad_bytes=SIZE), "2.0.0")
        yield fleet


def _edge_toml(config: EdgeConfig, path: Path, port: int) -> Path:
    models, tls = config.models, config.models.grpc_tls
    assert tls is not None
    path.write_text(
        f'device_id = "{config.device_id}"\n'
        f"health_interval_s = 0.5\n"
        f"[mqtt]\nport = {port}\nsession_expiry_s = 300\nreconnect_max_s = 2\n"
        f'[classifier]\nmodel = "{PLACEHOLDER_CNN}"\n'
        f"[reports]\nwindow = 3\ninterval_s = 0.5\n"
        f'[outbox]\npath = "{config.outbox.path}"\ndelivery = "broker"\n'
        f'[models]\npublic_key_file = "{models.public_key_file}"\nfolder = "{models.folder}"\n'
        f"latency_factor = {models.latency_factor}\n"
        f'[models.grpc_tls]\nca_file = "{tls.ca_file}"\ncert_file = "{tls.cert_file}"\n'
        f'key_file = "{tls.key_file}"\n'
        + "".join(
            f'[[cameras]]\nid = "{cam}"\nsource = "{SAMPLE_VIDEO}"\nsegment_id = "seg-{cam}"\n'
            f"sample_hz = 10\nloop = true\n"
            for cam in ("cam1", "cam2")
        ),
        encoding="utf-8",
    )
    return path


def _edge_process(config: Path, kill_at: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", KILLER, str(kill_at), str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_download_killed_midway_resumes_from_its_offset(
    fleet: Fleet, mqtt_config: MqttConfig, mosquitto: RunningBroker, tmp_path: Path
) -> None:
    config = edge_config(tmp_path, fleet, mqtt_config, "kill-dl")
    toml = _edge_toml(config, tmp_path / "edge.toml", mosquitto.port)
    size = fleet.offer("2.0.0").size
    fleet.servicer.chunk_delay_s = 0.02  # a slow link (~2.5 s): the kill lands mid-stream
    operator = Operator(mqtt_config, "kill-dl")
    partial = partial_path(config.models.folder, "2.0.0")
    first = _edge_process(toml)
    try:
        operator.wait_online(since_ms=0)
        operator.publish("model", fleet.update("2.0.0", "req-dl"))
        assert wait_until(lambda: partial.exists() and partial.stat().st_size >= size // 8, 60)
        # The download runs off the MQTT network thread: other commands are answered.
        other = telemetry_pb2.ConfigCommand(
            schema_version=1, request_id="cfg", report_interval_s=0.7
        )
        assert operator.send("config", other.SerializeToString()).ok
        assert partial.stat().st_size < size // 3, "the download ended before the check"
        assert wait_until(lambda: partial.stat().st_size >= size // 3, 60)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        held = partial.stat().st_size
        assert held < size
        started = now_ms()
        second = _edge_process(toml)
        try:
            operator.wait_online(since_ms=started)
            reply = operator.reply_to("req-dl", timeout_s=60)  # the pending update, resumed
            assert reply.ok, reply.error
            settings = settings_of(reply)
            assert (settings["resumed_from"], settings["bytes_downloaded"]) == (held, size - held)
            assert settings["model_version"] == "2.0.0"
        finally:
            assert "Traceback" not in stop_process(second)
    finally:
        if first.poll() is None:
            first.kill()
        operator.close()
    (cut_offset, sent_before), (offset, sent_after) = fleet.servicer.onnx_calls()
    assert cut_offset == 0
    assert (offset, offset + sent_after) == (held, size)
    # What the killed process received but had not written yet is all that came twice.
    assert 0 <= sent_before - held < size // 4
    state = load_state(config.models.folder)
    assert state.current is not None
    assert state.current.version == "2.0.0"
    assert state.pending == b""


def _finish_update(config: EdgeConfig) -> tuple[str, telemetry_pb2.CommandReply]:
    """Start the device in this process on what the killed one left; the version it starts
    on and the reply to the pending update it takes up."""
    publisher = MemoryPublisher()
    classifier = startup_classifier(config)
    started_on = classifier.card.version
    agent = EdgeAgent(config, classifier, publisher, Outbox(config.outbox))
    agent.start()
    try:
        assert agent.updater.wait_idle(60)
    finally:
        agent.stop()
    (reply,) = [
        telemetry_pb2.CommandReply.FromString(m.payload)
        for m in publisher.messages
        if m.topic == reply_topic(config.device_id, "model")
    ]
    return started_on, reply


def test_a_sigkill_at_any_step_of_the_swap_restarts_on_a_complete_model(
    fleet: Fleet, mqtt_config: MqttConfig, mosquitto: RunningBroker, tmp_path: Path
) -> None:
    payload = fleet.update("2.0.0", "req-swap")
    size = fleet.offer("2.0.0").size
    # The replaces of one update: pending recorded, the ONNX into staging, staging into
    # place, state naming it current, pending cleared. A kill before each, then none.
    outcomes: list[tuple[int, str, object]] = []
    for kill_at in (1, 2, 3, 4, 5, 0):
        run = tmp_path / f"kill-at-{kill_at}"
        config = edge_config(run, fleet, mqtt_config, "kill-swap")
        save_state(config.models.folder, ModelState(pending=payload))
        process = _edge_process(_edge_toml(config, run / "edge.toml", mosquitto.port), kill_at)
        try:
            if kill_at:
                output, _ = process.communicate(timeout=90)
                assert process.returncode == -signal.SIGKILL, output
                assert f"os.replace {kill_at}:" in output
            else:
                folder = config.models.folder
                assert wait_until(lambda: load_state(folder).pending == b"", 90)  # noqa: B023
                time.sleep(0.5)
                output = stop_process(process)
                assert "Traceback" not in output
        finally:
            if process.poll() is None:
                process.kill()
        assert "os.replace 6:" not in output  # the steps are the five above
        if not kill_at:  # not cut: the update was applied and answered by that process
            assert startup_classifier(config).card.version == "2.0.0"
            outcomes.append((kill_at, "2.0.0", None))
            continue
        started_on, reply = _finish_update(config)
        assert reply.ok, reply.error
        assert reply.request_id == "req-swap"
        settings = settings_of(reply)
        assert settings["model_version"] == "2.0.0"
        outcomes.append((kill_at, started_on, settings["bytes_downloaded"]))
        state = load_state(config.models.folder)
        assert state.current is not None
        assert state.current.is_complete()
        assert state.pending == b""
        leftovers = [p.name for p in config.models.folder.iterdir() if p.name.startswith(".")]
        assert leftovers == []
    # Cut before the state names the new model: the device restarts on the old one, and
    # already holds the bytes (they were fetched before the first replace that matters).
    assert outcomes == [
        (1, OLD, size),
        (2, OLD, 0),
        (3, OLD, 0),
        (4, OLD, 0),
        (5, "2.0.0", 0),
        (0, "2.0.0", None),
    ]


def test_an_update_sent_while_the_device_is_offline_is_applied_when_it_returns(
    fleet: Fleet, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    config = edge_config(tmp_path, fleet, mqtt_config, "offline-1")
    operator = Operator(mqtt_config, "offline-1")
    try:
        agent = build_agent(config)
        agent.start()
        operator.wait_online(since_ms=0)
        agent.stop()  # a clean disconnect: the broker keeps its session and subscriptions
        operator.publish("model", fleet.update("2.0.0", "req-offline", rollout_id="r-9"))
        assert fleet.servicer.onnx_calls() == []
        returned = build_agent(config)
        assert returned.classifier.card.version == OLD
        returned.start()
        try:
            reply = operator.reply_to("req-offline", timeout_s=60)
            assert reply.ok, reply.error
            assert settings_of(reply)["rollout_id"] == "r-9"
            assert returned.classifier.card.version == "2.0.0"
            # The retained status is published again, naming the model now in force.
            assert wait_until(lambda: operator.statuses[-1].model_version == "2.0.0")
        finally:
            returned.stop()
    finally:
        operator.close()


def test_a_device_short_of_disk_refuses_before_downloading_and_stays(
    fleet: Fleet, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    config = edge_config(tmp_path, fleet, mqtt_config, "full-1", min_free_bytes=2**62)
    publisher = MemoryPublisher()
    agent = EdgeAgent(config, startup_classifier(config), publisher, Outbox(config.outbox))
    agent.start()
    try:
        agent.submit_model(fleet.update("2.0.0", "req-full"))
        assert agent.updater.wait_idle(30)
        assert agent.classifier.card.version == OLD
        assert agent.health().model_update_error.startswith("disk: ")
    finally:
        agent.stop()
    (reply,) = [
        telemetry_pb2.CommandReply.FromString(m.payload)
        for m in publisher.messages
        if m.topic == reply_topic("full-1", "model")
    ]
    assert not reply.ok
    assert reply.error.startswith("disk: model 2.0.0 needs ")
    assert settings_of(reply)["model_version"] == OLD
    assert fleet.servicer.calls == []
    assert not partial_path(config.models.folder, "2.0.0").exists()
