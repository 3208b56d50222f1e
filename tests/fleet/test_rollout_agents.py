"""Rollouts to real edge agents on the shipped clip: the agent's self-test and swap, the
cloud's canary and rollback, over real Mosquitto and the real gRPC DownloadModel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from roadsense.cloud.config import CloudConfig
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.config import (
    CameraConfig,
    ClassifierConfig,
    EdgeConfig,
    ModelUpdateConfig,
    OutboxConfig,
    ReportConfig,
)
from roadsense.edge.runner import build_agent
from roadsense.models.card import load_card
from roadsense.models.shipped import PLACEHOLDER_CNN
from roadsense.provisioning.model_key import model_key_files

from ..conftest import SAMPLE_VIDEO
from ..support.helpers import wait_until
from ..support.model_releases import ModelKind, write_card, write_model
from ..support.rollout_support import FAST, RolloutFleet, rollout_fleet

pytestmark = pytest.mark.integration
SHIPPED = load_card(PLACEHOLDER_CNN).version
WINDOW = FAST.model_copy(
    update={
        "window_s": 6.0,
        "apply_timeout_s": 60.0,
        "min_reports": 8,
        # In-process agents' millisecond p95s differ by up to 1.7x for the same model on two
        # busy cores (a CI run failed a good canary at 1.5x); the slow variant is ~30x.
        "thresholds": FAST.thresholds.model_copy(update={"max_latency_ratio": 3.0}),
    }
)


def _agents(fleet: RolloutFleet, count: int) -> list[EdgeAgent]:
    public_key = model_key_files(fleet.workdir / "fleet")[1]
    agents = []
    for i in range(1, count + 1):
        device = fleet.device_name(i)  # unique to the test: the broker keeps sessions
        folder = fleet.workdir / device
        config = EdgeConfig(
            device_id=device,
            mqtt=fleet.cloud.config.mqtt,
            reports=ReportConfig(window=2, interval_s=0.25),
            outbox=OutboxConfig(path=folder / "outbox.sqlite"),
            health_interval_s=0.5,
            classifier=ClassifierConfig(type="onnxruntime", model=PLACEHOLDER_CNN),
            cameras=[
                CameraConfig(
                    id="cam1",
                    source=str(SAMPLE_VIDEO),
                    segment_id=f"seg-{device}",
                    sample_hz=4,
                    loop=True,
                )
            ],
            models=ModelUpdateConfig(
                public_key_file=public_key,
                grpc_address=fleet.cloud.address,
                folder=folder / "models",
                min_free_bytes=0,
                # Two busy cores make side-by-side timings noisy; the slow variant is ~30x.
                latency_factor=5.0,
            ),
        )
        agents.append(build_agent(config))
    for agent in agents:
        agent.start()
    fleet.wait_for_health([a.device_id for a in agents], reports=10)
    return agents


def _versions(agents: list[EdgeAgent]) -> set[str]:
    return {a.classifier.card.version for a in agents}


def _variants(tmp_path: Path, version: str, kind: ModelKind) -> dict[str, Path]:
    """The shipped model (what agents run) and a small model of ``kind`` as ``version``."""
    return {SHIPPED: PLACEHOLDER_CNN, version: write_model(tmp_path / version, version, kind)}


def _rehearsal(tmp_path: Path, version: str) -> dict[str, Path]:
    """The shipped model, and its bytes under ``version``: a release that classifies the
    same (another model, even a good one, shifts the level distribution on purpose)."""
    folder = tmp_path / version
    folder.mkdir()
    onnx = folder / "congestion.onnx"
    shutil.copyfile(PLACEHOLDER_CNN, onnx)
    write_card(onnx, version, "congestion")
    return {SHIPPED: PLACEHOLDER_CNN, version: onnx}


def test_canary_then_promotion_to_real_agents(cloud_config: CloudConfig, tmp_path: Path) -> None:
    files = _rehearsal(tmp_path, "2.0")
    with rollout_fleet(cloud_config, tmp_path, versions=(), files=files, rollout=WINDOW) as fleet:
        agents = _agents(fleet, 3)
        try:
            started = fleet.start(model_version="2.0", canary_devices=1)
            (canary,) = [d.device_id for d in started.devices if d.stage == 0]
            done = fleet.wait_for_state("done", timeout_s=90)
            assert _versions(agents) == {"2.0"}
            assert {d.state for d in done.devices} == {"applied"}
            assert {d.previous_version for d in done.devices} == {SHIPPED}
            assert [e.to_state for e in done.events] == ["canary", "canary", "promoting", "done"]
            # Reports name the model in force: each agent's newest ones say 2.0.
            assert wait_until(
                lambda: all(
                    fleet.cloud.store.device_health(a.device_id, done.updated_ms, 2**62)
                    for a in agents
                )
            )
            assert canary in {a.device_id for a in agents}
        finally:
            for agent in agents:
                agent.stop()


@pytest.mark.parametrize(
    ("variant", "reasons"),
    [
        ("wrong_shape", ("load:",)),
        ("nan", ("self_test:",)),
        # The agent's self-test refuses it, or (timings on busy cores vary) the cloud sees
        # the canary's p95 against the control's and sends the canary its old model back.
        ("slow", ("latency:", "inference p95")),
    ],
)
def test_a_bad_model_is_stopped_at_the_canary_and_the_fleet_stays(
    cloud_config: CloudConfig, tmp_path: Path, variant: ModelKind, reasons: tuple[str, ...]
) -> None:
    files = _variants(tmp_path, "2.0-bad", variant)
    with rollout_fleet(cloud_config, tmp_path, versions=(), files=files, rollout=WINDOW) as fleet:
        agents = _agents(fleet, 2)
        try:
            first, second = (a.device_id for a in agents)
            fleet.start(model_version="2.0-bad", canary_devices=1)
            failed = fleet.wait_for_state("failed", timeout_s=90)
            assert any(reason in failed.reason for reason in reasons), failed.reason
            assert wait_until(lambda: _versions(agents) == {SHIPPED})
            rows = {d.device_id: d for d in fleet.status().devices}
            if rows[first].state == "refused":
                assert f"canary refused the model: {first}: " in failed.reason
                assert rows[first].error.startswith(reasons[0])
            else:
                assert wait_until(lambda: fleet.status().devices[0].state == "rolled_back")
            assert rows[second].state == "waiting"
            assert failed.events[-1].actor == "controller"
        finally:
            for agent in agents:
                agent.stop()
