"""Rolling out a vehicle detector, on SQLite and PostgreSQL: the controller with real store
rows (health, measured reports) and an in-memory command publisher, on a clock of its own."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format

from roadsense.cloud.domain import HealthRecord, Measured, Reading, StatusUpdate, Telemetry
from roadsense.cloud.releases.registry import publish_model
from roadsense.cloud.rollout.config import RolloutConfig
from roadsense.cloud.rollout.controller import RolloutController
from roadsense.cloud.store.interface import Store
from roadsense.core.errors import NotFoundError, RolloutError
from roadsense.core.publisher import MemoryPublisher
from roadsense.models.card import sha256_file
from roadsense.models.shipped import DEFAULT_DETECTOR
from roadsense.models.signing import verify_model
from roadsense.proto.model_kinds import CONGESTION, DETECTOR
from roadsense.proto.topics import command_topic
from roadsense.proto.v1 import telemetry_pb2
from roadsense.provisioning.model_key import public_pem

from ..support.model_releases import write_detector_release, write_release
from ..support.stores import StoreTarget

T0 = 1_800_000_000_000
"""When the rollout starts (ms)."""
DEVICES = ("dev-a", "dev-b", "dev-c")
CONFIG = RolloutConfig(window_s=60.0, history_s=600.0, min_reports=3, apply_timeout_s=30.0)


@dataclass
class DetectorFleet:
    """A store with published releases, a controller on it and the devices' health."""

    store: Store
    controller: RolloutController
    commands: MemoryPublisher
    public_key: bytes
    registry: Path
    now: list[int] = field(default_factory=lambda: [T0])
    seq: int = 0

    def health(self, device: str, model: str = "1.0", detector: str = "det-1.0") -> None:
        """A health message from ``device`` received now, naming its models in force."""
        health = telemetry_pb2.DeviceHealth(
            device_id=device,
            model_version=model,
            detector_version=detector,
            inference_p95_ms=8.0,
        )
        body = json_format.MessageToJson(health)
        self.write([HealthRecord(device, self.now[0], self.now[0], body)])

    def write(self, records: Sequence[Telemetry]) -> None:
        self.store.write_batch(records, lambda readings: [])

    def measured(self, device: str, at_ms: Sequence[int], vehicles: float, stopped: float) -> None:
        """Measured reports of ``device`` captured at ``at_ms``, each with these means."""
        figures = Measured(4, vehicles, 9, stopped, 3, 0.2, "light", "occupancy-stopped/1", 0.8)
        readings: list[Telemetry] = []
        for t in at_ms:
            self.seq += 1
            readings.append(
                Reading(
                    device_id=device,
                    camera_id="cam1",
                    segment_id=f"seg-{device}",
                    seq=self.seq,
                    capture_time_ms=t,
                    window_start_ms=t - 5000,
                    received_ms=t,
                    model_version="1.0",
                    labels=("free", "heavy"),
                    probabilities=(0.9, 0.1),
                    frames_in_window=4,
                    level=2.5,
                    measured=figures,
                )
            )
        self.write(readings)

    def updates(self) -> list[tuple[str, telemetry_pb2.ModelUpdate]]:
        """Every ModelUpdate sent so far, with the topic it went to."""
        return [
            (m.topic, telemetry_pb2.ModelUpdate.FromString(m.payload))
            for m in self.commands.messages
        ]


@pytest.fixture
def fleet(store_target: StoreTarget, tmp_path: Path) -> Iterator[DetectorFleet]:
    """Classifier 1.0 and detectors det-1.0, det-2.0 published; the three devices online,
    each running classifier 1.0 and detector det-1.0 (health at T0 - 1 s)."""
    store = store_target.open()
    key = Ed25519PrivateKey.generate()
    registry = tmp_path / "registry"
    releases = {
        "1.0": write_release(tmp_path / "export" / "1.0", "1.0", size=1000),
        "det-1.0": write_detector_release(tmp_path / "export" / "det-1.0", "det-1.0"),
        "det-2.0": write_detector_release(tmp_path / "export" / "det-2.0", "det-2.0"),
    }
    for version, onnx in releases.items():
        publish_model(store, registry, onnx, version, key, now_ms=1, published_by="test")
    commands = MemoryPublisher()
    commands.start()  # connected; the controller's ticks are this test's own calls
    now = [T0 - 1000]
    controller = RolloutController(
        store, CONFIG, commands, lambda: dict.fromkeys(DEVICES, ""), clock=lambda: now[0]
    )
    detector_fleet = DetectorFleet(store, controller, commands, public_pem(key), registry, now)
    detector_fleet.write(
        [StatusUpdate(d, True, now[0], now[0], "agent", "1.0", ("cam1",)) for d in DEVICES]
    )
    for device in DEVICES:
        detector_fleet.health(device)
    now[0] = T0
    try:
        yield detector_fleet
    finally:
        store.close()


def test_a_detector_rollout_sends_a_signed_detector_update_and_reads_the_detector_version(
    fleet: DetectorFleet,
) -> None:
    view = fleet.controller.begin("det-2.0", actor="ops", canary_devices=1)
    assert view.rollout.reason == (
        "detector rollout: 1 canary of 3 devices, then stages 100% of the rest"
    )
    # What a rollback would send back is each device's detector, not its classifier.
    assert {d.device_id: d.previous_version for d in view.devices} == dict.fromkeys(
        DEVICES, "det-1.0"
    )
    (canary,) = [d.device_id for d in view.devices if d.stage == 0]
    ((topic, update),) = fleet.updates()
    assert topic == command_topic(canary, "model")
    assert (update.kind, update.version, update.rollout_id) == (
        DETECTOR,
        "det-2.0",
        view.rollout.rollout_id,
    )
    onnx = fleet.registry / "det-2.0" / DEFAULT_DETECTOR.name
    assert (update.size, update.sha256) == (onnx.stat().st_size, sha256_file(onnx))
    assert update.card_sha256 == sha256_file(onnx.with_suffix(".card.json"))
    verify_model(
        update.signature, fleet.public_key, update.sha256, update.size, "det-2.0",
        update.card_sha256,
    )  # fmt: skip

    def canary_row() -> tuple[str, str]:
        row = next(d for d in fleet.controller.view().devices if d.device_id == canary)
        return row.state, row.reported_version

    # Health naming det-2.0 as its classifier is not the detector in force.
    fleet.now[0] += 1000
    fleet.health(canary, model="det-2.0", detector="det-1.0")
    fleet.controller.tick()
    assert canary_row() == ("sent", "det-1.0")
    fleet.now[0] += 1000
    fleet.health(canary, model="1.0", detector="det-2.0")
    fleet.controller.tick()
    assert canary_row() == ("applied", "det-2.0")
    # The window opens on the canary that runs it.
    events = fleet.controller.view().events
    assert [(e.from_state, e.to_state) for e in events] == [("", "canary"), ("canary", "canary")]
    assert events[-1].reason == (
        "1 canary device(s) run det-2.0; watching them 60 s against the control"
    )


def test_a_reply_names_the_detector_in_force(fleet: DetectorFleet) -> None:
    view = fleet.controller.begin("det-2.0", actor="ops", canary_devices=1)
    ((_, update),) = fleet.updates()
    canary = view.devices[0].device_id
    # The device's reply carries the version in force of the kind it updated.
    reply = telemetry_pb2.CommandReply(
        request_id=update.request_id,
        device_id=canary,
        command="model",
        ok=True,
        settings_json=f'{{"model_version": "det-2.0", "rollout_id": "{update.rollout_id}"}}',
    )
    fleet.controller.on_reply(f"roadsense/v1/{canary}/reply/model", reply.SerializeToString())
    row = fleet.controller.view().devices[0]
    assert (row.device_id, row.state, row.reported_version) == (canary, "applied", "det-2.0")


def test_a_classifier_rollout_still_reads_the_classifier_version(fleet: DetectorFleet) -> None:
    onnx = write_release(fleet.registry.parent / "export" / "2.0", "2.0", size=1000)
    model = publish_model(
        fleet.store, fleet.registry, onnx, "2.0", Ed25519PrivateKey.generate(), now_ms=2,
        published_by="test",
    )  # fmt: skip
    assert model.kind == CONGESTION
    view = fleet.controller.begin("2.0", actor="ops", canary_devices=1)
    assert view.rollout.reason == "1 canary of 3 devices, then stages 100% of the rest"
    assert {d.previous_version for d in view.devices} == {"1.0"}
    ((_, update),) = fleet.updates()
    assert (update.kind, update.version) == (CONGESTION, "2.0")
    canary = view.devices[0].device_id
    fleet.now[0] += 1000
    fleet.health(canary, model="1.0", detector="2.0")
    fleet.controller.tick()
    assert fleet.controller.view().devices[0].state == "sent"
    fleet.health(canary, model="2.0", detector="det-1.0")
    fleet.controller.tick()
    assert fleet.controller.view().devices[0].state == "applied"


def test_a_detector_rollout_leaves_a_classifier_rollout_pending_sends_alone(
    fleet: DetectorFleet,
) -> None:
    onnx = write_release(fleet.registry.parent / "export" / "2.0", "2.0", size=1000)
    key = Ed25519PrivateKey.generate()
    publish_model(fleet.store, fleet.registry, onnx, "2.0", key, now_ms=2, published_by="t")
    classifier = fleet.controller.begin("2.0", actor="ops", canary_devices=1).rollout
    canary = fleet.controller.view(classifier.rollout_id).devices[0].device_id
    # The classifier's rollout ended with its canary still to answer (it was away).
    assert fleet.store.update_rollout(replace(classifier, state="done"), "canary")
    fleet.now[0] += 1000
    detector = fleet.controller.begin("det-2.0", actor="ops", device_ids=[canary], canary_devices=1)

    def rows() -> tuple[str, str]:
        first = fleet.controller.view(classifier.rollout_id).devices[0]
        second = fleet.controller.view(detector.rollout.rollout_id).devices[0]
        return first.state, second.state

    assert rows() == ("sent", "sent")  # not superseded: the detector is another model
    # One health message answers both, each read of its own model.
    fleet.now[0] += 1000
    fleet.health(canary, model="2.0", detector="det-2.0")
    fleet.controller.tick()
    assert rows() == ("applied", "applied")


def test_a_detector_rollout_starts_only_when_every_detector_can_be_sent_back(
    fleet: DetectorFleet,
) -> None:
    def refused(version: str = "det-2.0") -> str:
        with pytest.raises(RolloutError) as caught:
            fleet.controller.begin(version, actor="ops", canary_devices=1)
        return str(caught.value)

    with pytest.raises(NotFoundError, match="no published model 'det-9'"):
        fleet.controller.begin("det-9", actor="ops", canary_devices=1)
    fleet.health("dev-b", detector="")  # it does not measure (or has not said)
    assert refused() == (
        "1 device(s) have not reported their detector model yet (dev-b): a rollback could "
        "not send it back; wait for their health or leave them out with --devices"
    )
    fleet.health("dev-b", detector="det-0.9")
    assert refused() == (
        "devices dev-b run detector model(s) det-0.9, not published: publish them "
        "(`models publish`) so a rollback can send them back"
    )
    fleet.health("dev-b", detector="1.0")  # a classifier's version
    assert refused() == (
        "model(s) 1.0 that devices run as their detector model are published as "
        "congestion, not detector: a rollback could not send them back"
    )
    assert fleet.store.rollouts() == []
    assert fleet.updates() == []
    fleet.health("dev-b")
    assert fleet.controller.begin("det-2.0", actor="ops", canary_devices=1).rollout.state == (
        "canary"
    )


def _watch_the_canary(fleet: DetectorFleet, canary_vehicles: float) -> str:
    """A detector rollout whose canary sees ``canary_vehicles`` in view where every device
    saw 4.0 (a quarter of them stopped) before the rollout and the control still does;
    the controller's verdict at the end of the window. Returns the canary's id."""
    history = [T0 - 300_000 + i * 10_000 for i in range(6)]
    for device in DEVICES:
        fleet.measured(device, history, vehicles=4.0, stopped=1.0)
    view = fleet.controller.begin("det-2.0", actor="ops", canary_devices=1)
    canary = view.devices[0].device_id
    fleet.now[0] = T0 + 1000
    fleet.health(canary, detector="det-2.0")
    fleet.controller.tick()  # applied: the window opens now
    window = [T0 + 5000 + i * 10_000 for i in range(6)]
    for device in DEVICES:
        if device == canary:
            fleet.measured(device, window, vehicles=canary_vehicles, stopped=1.0)
        else:
            fleet.measured(device, window, vehicles=4.0, stopped=1.0)
    fleet.now[0] = T0 + 1000 + 60_000
    fleet.controller.tick()
    return canary


def test_a_detector_that_counts_twice_the_vehicles_fails_its_canary(
    fleet: DetectorFleet,
) -> None:
    canary = _watch_the_canary(fleet, canary_vehicles=8.0)
    view = fleet.controller.view()
    assert view.rollout.state == "failed"
    assert view.rollout.reason == (
        "canary outside thresholds: vehicles in view changed by +100% against their history, "
        "the control's by +0% (limit ±25%); 1 device(s) sent their previous model back"
    )
    evaluation = json.loads(view.rollout.evaluation_json)
    assert evaluation["verdict"] == "fail"
    assert (evaluation["canary"]["vehicle_change"], evaluation["control"]["vehicle_change"]) == (
        1.0,
        0.0,
    )
    assert (evaluation["canary"]["stopped_change"], evaluation["control"]["stopped_change"]) == (
        -0.125,  # a quarter of 4 stopped before; the same 1 of 8 now
        0.0,
    )
    figures = {d["device_id"]: d for d in evaluation["devices"]}
    assert (figures[canary]["vehicles"], figures[canary]["vehicles_before"]) == (8.0, 4.0)
    assert figures[canary]["level_shift"] == 0.0
    # The canary is sent its previous detector back, as a detector; the control nothing.
    (_, first), (topic, back) = fleet.updates()
    assert topic == command_topic(canary, "model")
    assert (back.kind, back.version) == (DETECTOR, "det-1.0")
    assert back.request_id != first.request_id


def test_a_detector_that_counts_as_the_old_one_is_promoted(fleet: DetectorFleet) -> None:
    canary = _watch_the_canary(fleet, canary_vehicles=4.4)
    view = fleet.controller.view()
    assert view.rollout.state == "promoting"
    assert view.rollout.reason.startswith("canary within thresholds: ")
    assert "vehicles change 0.1 vs 0, stopped share change -0.0227 vs 0; stage 1" in (
        view.rollout.reason
    )
    promoted = fleet.updates()[1:]
    assert sorted(topic for topic, _ in promoted) == [
        command_topic(d, "model") for d in DEVICES if d != canary
    ]
    assert {(u.kind, u.version) for _, u in promoted} == {(DETECTOR, "det-2.0")}
