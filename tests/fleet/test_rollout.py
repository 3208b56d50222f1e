"""Rollouts end to end: real Mosquitto, the real cloud (controller, ingest, gRPC
DownloadModel), signed releases, and simulated devices that speak the agent's contract."""

from __future__ import annotations

import hashlib
import json
import queue
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest

from roadsense.cloud.api.auth import AuthConfig, TokenConfig, hash_token
from roadsense.cloud.config import CloudConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.core.timeutil import now_ms
from roadsense.harness.sim_fleet import Behaviour
from roadsense.models.signing import verify_model
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.model_kinds import DETECTOR
from roadsense.proto.topics import command_topic, health_topic
from roadsense.proto.v1 import fleet_pb2, telemetry_pb2

from ..support.helpers import wait_until
from ..support.model_releases import write_detector_release
from ..support.rollout_support import FAST, RELEASE_BYTES, rollout_fleet

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
        # The cloud's row follows once the device's answer to the rollback is in.
        assert wait_until(
            lambda: (
                {d.state for d in fleet.status().devices if d.stage == 0}
                <= {"refused", "rolled_back"}
            )
        )
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
        assert [e.to_state for e in final.events][-1] == "failed"
        assert final.events[-1].actor == "controller"


def test_an_offline_device_gets_the_model_when_it_is_back(
    cloud_config: CloudConfig, tmp_path: Path
) -> None:
    with rollout_fleet(cloud_config, tmp_path) as fleet:
        fleet.start_devices(2)
        # The third device reported once, then went away without a session the broker
        # keeps: the update sent meanwhile is lost, only the controller's re-send brings it.
        away = fleet.device(fleet.device_name(3))
        away.start(clean_session=True)
        fleet.wait_for_health([away.device_id])
        away.stop()
        assert wait_until(
            lambda: (
                not next(
                    d for d in fleet.cloud.store.devices() if d.device_id == away.device_id
                ).online
            )
        )
        started = fleet.start(model_version="2.0", canary_devices=1)
        assert away.device_id not in [d.device_id for d in started.devices if d.stage == 0]
        done = fleet.wait_for_state("done")
        rows = {d.device_id: d for d in done.devices}
        assert rows[away.device_id].state == "sent"
        assert "1 pending" in done.reason
        assert away.version == "1.0"
        back = fleet.device(away.device_id)  # the same device id, restarted
        back.start(clean_session=True)
        assert wait_until(lambda: back.version == "2.0")

        def row() -> fleet_pb2.RolloutDevice:
            return next(d for d in fleet.status().devices if d.device_id == away.device_id)

        assert wait_until(lambda: row().state == "applied")
        assert row().attempts >= 2  # the first send went to a device that was not there
        assert back.counters.bytes_downloaded == RELEASE_BYTES


def test_a_device_that_cannot_apply_stays_on_its_model_and_says_why(
    cloud_config: CloudConfig, tmp_path: Path
) -> None:
    full = "disk: model 2.0 needs 200000 more bytes; 1000 are free"
    with rollout_fleet(cloud_config, tmp_path) as fleet:
        fleet.start_devices(3)
        stuck = fleet.devices[2]
        stuck.behaviours = {"2.0": Behaviour(refuse=full)}  # only this device's disk is full
        fleet.start(model_version="2.0", canary_devices=1)
        done = fleet.wait_for_state("done")
        rows = {d.device_id: d for d in done.devices}
        assert rows[stuck.device_id].state == "refused"
        assert rows[stuck.device_id].error == full
        assert rows[stuck.device_id].reported_version == "1.0"
        assert stuck.version == "1.0"
        assert "1 refused" in done.reason
        assert sorted(fleet.versions().values()) == ["1.0", "2.0", "2.0"]


def test_start_refusals_name_what_is_wrong(cloud_config: CloudConfig, tmp_path: Path) -> None:
    with rollout_fleet(cloud_config, tmp_path, versions=("2.0",)) as fleet:
        fleet.start_devices(2)  # they run 1.0, which this registry never published

        def refused(device_ids: Sequence[str] = (), **request: object) -> str:
            with pytest.raises(grpc.RpcError) as caught:
                fleet.start(device_ids, **request)
            return f"{caught.value.code().name}: {caught.value.details()}"

        assert refused(model_version="9.9", canary_devices=1).startswith(
            "NOT_FOUND: no published model '9.9'"
        )
        assert refused(model_version="../2.0", canary_devices=1).startswith("INVALID_ARGUMENT")
        assert "not in the fleet: ghost" in refused(
            device_ids=["ghost"], model_version="2.0", canary_devices=1
        )
        assert "canary of 5 devices: give 1 to 2" in refused(model_version="2.0", canary_devices=5)
        assert "percent of the devices or as a count" in refused(model_version="2.0")
        assert "run model(s) 1.0, not published" in refused(model_version="2.0", canary_devices=1)
        with pytest.raises(grpc.RpcError) as caught:
            fleet.status()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_detector_update_goes_out_signed_and_its_health_shows_it_applied(
    cloud_config: CloudConfig, tmp_path: Path
) -> None:
    # The wire itself: this device is the test's own MQTT client, which says which detector
    # it runs in its health and takes the update as bytes.
    detectors = {
        v: write_detector_release(tmp_path / "detectors" / v, v) for v in ("det-1.0", "det-2.0")
    }
    with rollout_fleet(cloud_config, tmp_path, versions=("1.0",), files=detectors) as fleet:
        device_id = fleet.device_name(1)
        updates: queue.Queue[bytes] = queue.Queue()
        device = MqttPublisher(fleet.cloud.config.mqtt, device_id)
        device.subscribe(command_topic(device_id, "model"), lambda _, payload: updates.put(payload))
        device.start()
        try:
            assert device.wait_connected(10.0)

            def health(detector: str) -> None:
                message = telemetry_pb2.DeviceHealth(
                    schema_version=SCHEMA_VERSION, device_id=device_id, time_ms=now_ms(),
                    model_version="1.0", detector_version=detector,
                )  # fmt: skip
                device.publish(health_topic(device_id), message.SerializeToString())

            health("det-1.0")
            store = fleet.cloud.store
            assert wait_until(lambda: bool(store.device_health(device_id, 0, 2**62)))
            started = fleet.start([device_id], model_version="det-2.0", canary_devices=1)
            assert started.reason.startswith("detector rollout: 1 canary of 1 devices")
            assert started.devices[0].previous_version == "det-1.0"
            update = telemetry_pb2.ModelUpdate.FromString(updates.get(timeout=10))
            assert (update.kind, update.version, update.rollout_id) == (
                DETECTOR,
                "det-2.0",
                started.rollout_id,
            )
            verify_model(
                update.signature, fleet.public_key, update.sha256, update.size, update.version,
                update.card_sha256,
            )  # fmt: skip
            # What the update names is what DownloadModel serves: the detector and its card.
            for part, expected in (
                (fleet_pb2.MODEL_PART_ONNX, update.sha256),
                (fleet_pb2.MODEL_PART_CARD, update.card_sha256),
            ):
                request = fleet_pb2.DownloadModelRequest(version="det-2.0", part=part)
                data = b"".join(c.data for c in fleet.stub.DownloadModel(request, timeout=30))
                assert hashlib.sha256(data).hexdigest() == expected
            assert json.loads(data)["kind"] == DETECTOR
            # Its health naming det-2.0 as the detector in force: the canary applied it.
            health("det-2.0")
            assert wait_until(lambda: fleet.status().devices[0].state == "applied")
            assert fleet.status().devices[0].reported_version == "det-2.0"
        finally:
            device.stop()


@pytest.mark.parametrize(
    ("new", "outcome"),
    [(Behaviour(), "done"), (Behaviour(vehicles_mean=12.0), "failed")],
    ids=["counts-alike", "counts-twice"],
)
def test_a_detector_rollout_is_judged_on_what_the_devices_measure(
    cloud_config: CloudConfig, tmp_path: Path, new: Behaviour, outcome: str
) -> None:
    # Measuring devices see 6 vehicles a sample on det-1.0; det-2.0 either sees as many or
    # twice as many (vehicles the old detector and the control do not see).
    detectors = {
        v: write_detector_release(tmp_path / "detectors" / v, v) for v in ("det-1.0", "det-2.0")
    }
    behaviours = {"det-2.0": new}
    with rollout_fleet(
        cloud_config, tmp_path, versions=("1.0",), files=detectors, behaviours=behaviours
    ) as fleet:
        fleet.start_devices(4, detector="det-1.0")
        started = fleet.start(model_version="det-2.0", canary_percent=50)
        assert started.reason.startswith("detector rollout: 2 canary of 4 devices")
        final = fleet.wait_for_state(outcome, timeout_s=90)
        if outcome == "done":
            assert wait_until(lambda: set(fleet.detectors().values()) == {"det-2.0"})
        else:
            assert "vehicles" in final.reason
            # The canaries got det-1.0 back as their detector; nobody else was touched.
            assert wait_until(lambda: set(fleet.detectors().values()) == {"det-1.0"})
        # The classifier was never part of it.
        assert set(fleet.versions().values()) == {"1.0"}


ADMIN, READER, FEED = "admin-token-rollout", "reader-token-rollout", "feed-token-rollout"
RPCS = (
    ("StartRollout", fleet_pb2.StartRolloutRequest(model_version="2.0", canary_devices=1)),
    ("GetRollout", fleet_pb2.GetRolloutRequest()),
    ("PauseRollout", fleet_pb2.RolloutActionRequest()),
    ("ResumeRollout", fleet_pb2.RolloutActionRequest()),
    ("RollbackRollout", fleet_pb2.RolloutActionRequest()),
)


def _with_tokens(cloud_config: CloudConfig) -> CloudConfig:
    tokens = [
        TokenConfig(name="ops-alice", role="admin", sha256=hash_token(ADMIN)),
        TokenConfig(name="dash", role="reader", sha256=hash_token(READER)),
        TokenConfig(name="feeds", role="feed", sha256=hash_token(FEED)),
    ]
    grpc_config = cloud_config.grpc.model_copy(update={"auth": AuthConfig(tokens=tokens)})
    return cloud_config.model_copy(update={"grpc": grpc_config})


def test_pause_resume_rollback_are_admin_only_and_recorded(
    cloud_config: CloudConfig, tmp_path: Path
) -> None:
    slow_verdict = FAST.model_copy(update={"window_s": 600.0})
    with rollout_fleet(
        _with_tokens(cloud_config), tmp_path, rollout=slow_verdict, token=ADMIN
    ) as fleet:
        for token, code in (("", "UNAUTHENTICATED"), (READER, "PERMISSION_DENIED"),
                            (FEED, "PERMISSION_DENIED"), ("junk", "UNAUTHENTICATED")):  # fmt: skip
            for method, request in RPCS:
                with pytest.raises(grpc.RpcError) as caught:
                    getattr(fleet.stub, method)(request, timeout=10, metadata=fleet.metadata(token))
                assert caught.value.code().name == code, (method, token)
        assert fleet.cloud.store.rollouts() == []  # nothing the refused calls asked happened
        fleet.start_devices(3)
        started = fleet.start(model_version="2.0", canary_devices=1)
        (canary,) = [d for d in fleet.devices if d.device_id == started.devices[0].device_id]
        assert wait_until(lambda: canary.version == "2.0")
        assert wait_until(lambda: len(fleet.status().events) == 2)  # the window opened
        assert fleet.status().devices[0].state == "applied"

        def act(method: str, reason: str = "") -> fleet_pb2.RolloutStatus:
            request = fleet_pb2.RolloutActionRequest(rollout_id=started.rollout_id, reason=reason)
            status: fleet_pb2.RolloutStatus = getattr(fleet.stub, method)(
                request, timeout=10, metadata=fleet.metadata()
            )
            return status

        paused = act("PauseRollout", "city marathon today")
        assert (paused.state, paused.reason) == ("paused", "city marathon today")
        with pytest.raises(grpc.RpcError) as caught:
            act("PauseRollout")
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "is paused: only a running one pauses" in str(caught.value.details())
        assert act("ResumeRollout").state == "canary"
        back = act("RollbackRollout", "operator saw odd levels")
        assert back.state == "rolled_back"
        assert wait_until(lambda: set(fleet.versions().values()) == {"1.0"})
        assert wait_until(lambda: fleet.status().devices[0].state == "rolled_back")
        events = [(e.actor, e.from_state, e.to_state) for e in fleet.status().events]
        assert events == [
            ("ops-alice", "", "canary"),
            ("controller", "canary", "canary"),
            ("ops-alice", "canary", "paused"),
            ("ops-alice", "paused", "canary"),
            ("ops-alice", "canary", "rolled_back"),
        ]
        assert fleet.status().events[-1].reason.startswith("operator saw odd levels; 1 device")
        with pytest.raises(grpc.RpcError) as caught:
            act("ResumeRollout")
        assert "is rolled_back, not paused" in str(caught.value.details())
        # The controls never got the model, so nothing was sent back to them.
        assert [d.counters.bytes_downloaded for d in fleet.devices].count(0) == 2
