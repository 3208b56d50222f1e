"""Rollouts end to end: real Mosquitto, the real cloud (controller, ingest, gRPC
DownloadModel), signed releases, and simulated devices that speak the agent's contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadsense.bench.sim_fleet import Behaviour
from roadsense.cloud.config import CloudConfig

from .helpers import wait_until
from .rollout_support import RELEASE_BYTES, rollout_fleet

pytestmark = pytest.mark.integration


def test_canary_on_two_of_six_then_promotion_to_all(
    cloud_config: CloudConfig, tmp_path: Path
) -> None:
    with rollout_fleet(cloud_config, tmp_path) as fleet:
        fleet.start_devices(6)
        started = fleet.start(model_version="2.0", canary_devices=2)
        assert started.state == "canary"
        canaries = [d.device_id for d in started.devices if d.stage == 0]
        assert len(canaries) == 2
        assert {d.state for d in started.devices if d.stage == 0} == {"sent"}
        assert {d.state for d in started.devices if d.stage == 1} == {"waiting"}
        # The canaries run it while the control devices wait for the verdict.
        assert wait_until(lambda: all(fleet.versions()[c] == "2.0" for c in canaries))
        assert sum(v == "2.0" for v in fleet.versions().values()) == 2
        done = fleet.wait_for_state("done")
        assert set(fleet.versions().values()) == {"2.0"}
        assert {d.state for d in done.devices} == {"applied"}
        assert [(e.from_state, e.to_state) for e in done.events] == [
            ("", "canary"),
            ("canary", "canary"),
            ("canary", "promoting"),
            ("promoting", "done"),
        ]
        assert done.events[0].actor == "anonymous"
        assert {e.actor for e in done.events[1:]} == {"controller"}
        assert "canary within thresholds" in done.events[2].reason
        evaluation = json.loads(done.evaluation_json)
        assert evaluation["verdict"] == "pass"
        assert sorted(evaluation["canaries"]) == sorted(canaries)
        assert evaluation["canary"]["p95_ms"] > 0
        assert evaluation["control"]["p95_ms"] > 0
        # Each device fetched the release once, whole, and no report went unacknowledged.
        for device in fleet.devices:
            assert device.counters.bytes_downloaded == RELEASE_BYTES
            assert device.counters.swaps == 1
        assert wait_until(
            lambda: all(
                d.counters.reports_acked == d.counters.reports_created for d in fleet.devices
            )
        )


BAD_MODELS = {
    "refused-load": (
        Behaviour(refuse="load: input shape [1,3,96,96], card says [1,3,224,224]"),
        "load: input shape",
    ),
    "refused-nan": (
        Behaviour(refuse="self_test: NaN in the outputs of 8 recent frames"),
        "self_test: NaN",
    ),
    "ten-times-slower": (Behaviour(p95_ms=80.0), "inference p95"),
    "levels-shifted": (Behaviour(class_weights=(0.0, 0.0, 0.05, 0.15, 0.8)), "level distribution"),
    "uncertain": (Behaviour(uncertain_share=0.6), "uncertain frames"),
}


@pytest.mark.parametrize("bad", sorted(BAD_MODELS))
def test_a_bad_model_stops_at_the_canary_and_is_rolled_back(
    cloud_config: CloudConfig, tmp_path: Path, bad: str
) -> None:
    behaviour, reason = BAD_MODELS[bad]
    with rollout_fleet(cloud_config, tmp_path, behaviours={"2.0": behaviour}) as fleet:
        fleet.start_devices(4)
        started = fleet.start(model_version="2.0", canary_percent=50)
        canaries = {d.device_id for d in started.devices if d.stage == 0}
        assert len(canaries) == 2
        failed = fleet.wait_for_state("failed")
        assert reason in failed.reason
        # Everyone ends on the old model: the canaries that took it were sent it back.
        assert wait_until(lambda: set(fleet.versions().values()) == {"1.0"})
        final = fleet.wait_for_state("failed")
        rows = {d.device_id: d for d in final.devices}
        for device in fleet.devices:
            row = rows[device.device_id]
            if device.device_id in canaries:
                # The old model was held: going back cost no download.
                assert device.counters.bytes_downloaded == RELEASE_BYTES
                assert row.state in ("refused", "rolled_back")
            else:
                assert device.counters.bytes_downloaded == 0
                assert row.state == "waiting"
        assert wait_until(
            lambda: (
                {d.state for d in fleet.status().devices if d.stage == 0}
                <= {"refused", "rolled_back"}
            )
        )
        assert [e.to_state for e in final.events][-1] == "failed"
        assert final.events[-1].actor == "controller"
