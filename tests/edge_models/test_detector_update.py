"""A measuring device's vehicle detector replaced by a ModelUpdate of kind "detector".

The real shipped detector on the real clip; releases are copies of it under other versions
(the same bytes, another signed card), installed where the device keeps its detector
releases so that no download is needed; the download path's card check by kind is tested
on its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadsense.core.errors import ModelCardError, ModelUpdateError
from roadsense.core.publisher import MemoryPublisher
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.backends.detector import Detector, create_detector
from roadsense.edge.config import (
    CameraConfig,
    ClassifierConfig,
    EdgeConfig,
    ModelUpdateConfig,
    OutboxConfig,
    ReportConfig,
)
from roadsense.edge.measure.config import MeasureConfig
from roadsense.edge.outbox import Outbox
from roadsense.edge.runner import startup_classifier, startup_detector
from roadsense.edge.updates.download import ModelOffer, _check_card, read_model_update
from roadsense.edge.updates.selftest import check_detections
from roadsense.edge.updates.slots import DETECTOR_FOLDER
from roadsense.edge.updates.state import load_state
from roadsense.models.card import card_path_for, load_card, sha256_file
from roadsense.models.detection.card import load_detector_card
from roadsense.models.shipped import DEFAULT_DETECTOR, PLACEHOLDER_CNN
from roadsense.models.signing import sign_model
from roadsense.proto.model_kinds import CONGESTION, DETECTOR
from roadsense.proto.topics import reply_topic
from roadsense.proto.v1 import telemetry_pb2
from roadsense.provisioning.model_key import public_pem

from ..conftest import SAMPLE_VIDEO
from ..support.helpers import wait_until

SHIPPED = load_detector_card(DEFAULT_DETECTOR).version


def _release(folder: Path, version: str) -> Path:
    """The shipped detector as release ``version``, installed in ``folder/<version>/``."""
    target = folder / version
    target.mkdir(parents=True)
    onnx = target / DEFAULT_DETECTOR.name
    shutil.copy(DEFAULT_DETECTOR, onnx)
    card = json.loads(card_path_for(DEFAULT_DETECTOR).read_text(encoding="utf-8"))
    card["version"] = version
    card_path_for(onnx).write_text(json.dumps(card), encoding="utf-8")
    return onnx


def _update(key: Ed25519PrivateKey, onnx: Path, request_id: str, kind: str = DETECTOR) -> bytes:
    version = json.loads(card_path_for(onnx).read_bytes())["version"]
    card_sha256 = hashlib.sha256(card_path_for(onnx).read_bytes()).hexdigest()
    sha256, size = sha256_file(onnx), onnx.stat().st_size
    return telemetry_pb2.ModelUpdate(
        schema_version=1,
        request_id=request_id,
        version=version,
        size=size,
        sha256=sha256,
        card_sha256=card_sha256,
        signature=sign_model(key, sha256, size, version, card_sha256),
        rollout_id="r-det",
        kind=kind,
    ).SerializeToString()


def _config(tmp_path: Path, key: Ed25519PrivateKey, measure: bool = True) -> EdgeConfig:
    (tmp_path / "model-signing.pub").write_bytes(public_pem(key))
    return EdgeConfig(
        device_id="dev-1",
        classifier=ClassifierConfig(model=PLACEHOLDER_CNN),
        measure=MeasureConfig(enabled=measure),
        reports=ReportConfig(window=3, interval_s=0.5),
        outbox=OutboxConfig(path=tmp_path / "outbox.sqlite", delivery="broker"),
        health_interval_s=0.5,
        models=ModelUpdateConfig(
            folder=tmp_path / "models",
            public_key_file=tmp_path / "model-signing.pub",
            frames_wait_s=20.0,
            latency_factor=5.0,
        ),
        cameras=[
            CameraConfig(
                id="cam1", source=str(SAMPLE_VIDEO), segment_id="seg", sample_hz=5, loop=True
            )
        ],
    )


def _replies(publisher: MemoryPublisher) -> list[telemetry_pb2.CommandReply]:
    return [
        telemetry_pb2.CommandReply.FromString(m.payload)
        for m in publisher.messages
        if m.topic == reply_topic("dev-1", "model")
    ]


def _measured(publisher: MemoryPublisher) -> list[telemetry_pb2.Measurements]:
    reports = [
        telemetry_pb2.CongestionReport.FromString(m.payload)
        for m in publisher.messages
        if m.topic.endswith("/congestion")
    ]
    return [r.measurements for r in reports]


def _agent(config: EdgeConfig, publisher: MemoryPublisher) -> EdgeAgent:
    detector = startup_detector(config)
    classifier = startup_classifier(config)
    return EdgeAgent(config, classifier, publisher, Outbox(config.outbox), detector=detector)


@pytest.mark.integration
def test_a_measuring_device_swaps_in_a_signed_detector_and_rolls_it_back(
    tmp_path: Path,
) -> None:
    key = Ed25519PrivateKey.generate()
    config = _config(tmp_path, key)
    folder = config.models.folder / DETECTOR_FOLDER
    release = _release(folder, "1.1.0-test")
    publisher = MemoryPublisher()
    agent = _agent(config, publisher)
    agent.start()
    try:
        assert wait_until(lambda: len(_measured(publisher)) >= 2, 60)
        agent.submit_model(_update(key, release, "req-1"))
        assert wait_until(lambda: len(_replies(publisher)) == 1, 60)
        (reply,) = _replies(publisher)
        assert (reply.ok, reply.error, reply.request_id) == (True, "", "req-1")
        settings = json.loads(reply.settings_json)
        assert (settings["model_version"], settings["previous_version"]) == ("1.1.0-test", SHIPPED)
        assert settings["bytes_downloaded"] == 0
        assert settings["already_held"] is True
        assert settings["self_test"]["frames"] > 0
        assert agent.detector.version == "1.1.0-test"
        # The classifier is not touched; the detector's own state records the swap.
        assert agent.classifier.version == load_card(PLACEHOLDER_CNN).version
        assert load_state(config.models.folder).current is None
        state = load_state(folder)
        assert state.current is not None
        assert state.current.version == "1.1.0-test"
        assert state.previous is not None
        assert state.previous.version == SHIPPED
        health = agent.health()
        assert (health.detector_version, health.previous_detector_version) == (
            "1.1.0-test",
            SHIPPED,
        )
        # Reports after the swap name the new detector, none mixes the two.
        before = len(_measured(publisher))
        assert wait_until(lambda: len(_measured(publisher)) >= before + 2, 60)
        versions = [m.detector_version for m in _measured(publisher)]
        first_new = versions.index("1.1.0-test")
        assert set(versions[:first_new]) == {SHIPPED}
        assert set(versions[first_new:]) == {"1.1.0-test"}

        # Back to the shipped detector, as a rollback does: held, so nothing is fetched.
        agent.submit_model(_update(key, DEFAULT_DETECTOR, "req-2"))
        assert wait_until(lambda: len(_replies(publisher)) == 2, 60)
        back = _replies(publisher)[1]
        assert back.ok, back.error
        assert json.loads(back.settings_json)["model_version"] == SHIPPED
        assert agent.detector.version == SHIPPED
    finally:
        agent.stop()


@pytest.mark.integration
def test_a_device_that_does_not_measure_refuses_a_detector_update(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    config = _config(tmp_path, key, measure=False)
    release = _release(tmp_path / "elsewhere", "1.1.0-test")
    publisher = MemoryPublisher()
    publisher.start()  # connected: replies go out
    agent = _agent(config, publisher)
    try:
        agent.submit_model(_update(key, release, "req-3"))
        (reply,) = _replies(publisher)
        assert (reply.ok, reply.request_id) == (False, "req-3")
        assert reply.error == "config: this device runs no detector model"
        assert agent.updater.wait_idle(5)
    finally:
        agent.stop()


def test_an_update_of_an_unknown_kind_is_malformed() -> None:
    key = Ed25519PrivateKey.generate()
    update = read_model_update(_update(key, DEFAULT_DETECTOR, "req-4", kind="radar"))
    assert update.offer is None
    assert update.problem == "unknown model kind 'radar'; known: congestion, detector"
    # An empty kind, as clouds before detectors send it, is the classifier's.
    offer = read_model_update(_update(key, DEFAULT_DETECTOR, "r", kind="")).offer
    assert offer is not None
    assert offer.kind == CONGESTION


def test_a_card_of_another_kind_is_refused() -> None:
    data = card_path_for(DEFAULT_DETECTOR).read_bytes()
    card = load_detector_card(DEFAULT_DETECTOR)
    sha = hashlib.sha256(data).hexdigest()
    offer = ModelOffer(card.version, 1, card.onnx_sha256, sha, b"\0" * 64, DETECTOR)
    assert _check_card(offer, data).version == card.version
    as_classifier = ModelOffer(card.version, 1, card.onnx_sha256, sha, b"\0" * 64, CONGESTION)
    with pytest.raises(ModelCardError, match="is of a detector model, not of a congestion model"):
        _check_card(as_classifier, data)


def _found(boxes: Sequence[Sequence[float]], scores: Sequence[float]) -> sv.Detections:
    return sv.Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        confidence=np.asarray(scores, np.float32),
        class_id=np.zeros(len(scores), int),
    )


@pytest.mark.parametrize(
    ("boxes", "scores", "problem"),
    [
        ([[1, 1, math.nan, 5]], [0.5], "not finite"),
        ([[1, 1, 400, 5]], [0.5], "outside the 352x288 frame"),
        ([[10, 10, 5, 20]], [0.5], "negative size"),
        ([[1, 1, 5, 5]], [1.5], "scores outside 0..1"),
    ],
)
def test_the_detector_self_test_refuses_unsound_boxes(
    boxes: list[list[float]], scores: list[float], problem: str
) -> None:
    frame = np.zeros((288, 352, 3), np.uint8)
    check_detections("2.0", [_found([[0, 0, 352, 288]], [1.0])], [frame])  # sound: passes
    with pytest.raises(ModelUpdateError, match=f"self_test: model 2.0: .*{problem}"):
        check_detections("2.0", [_found(boxes, scores)], [frame])
    with pytest.raises(ModelUpdateError, match="1 results for 2 frames"):
        check_detections("2.0", [_found(boxes, scores)], [frame, frame])


@pytest.mark.integration
def test_a_detector_whose_boxes_are_unsound_is_refused_and_the_old_one_keeps_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Ed25519PrivateKey.generate()
    config = _config(tmp_path, key)
    release = _release(config.models.folder / DETECTOR_FOLDER, "1.2.0-broken")

    def load(key_: str, onnx: str | Path, options: dict[str, object] | None = None) -> Detector:
        detector = create_detector(key_, onnx, options)
        if Path(onnx) == release:  # the release's detector stretches every box past the frame
            detect = detector.detect

            def stretched(frames: Sequence[np.ndarray]) -> list[sv.Detections]:
                found = detect(frames)
                for detections in found:
                    detections.xyxy = detections.xyxy * 10
                return found

            detector.detect = stretched  # type: ignore[method-assign]
        return detector

    monkeypatch.setattr("roadsense.edge.updates.slots.create_detector", load)
    publisher = MemoryPublisher()
    agent = _agent(config, publisher)
    agent.start()
    try:
        assert wait_until(lambda: len(_measured(publisher)) >= 2, 60)
        agent.submit_model(_update(key, release, "req-5"))
        assert wait_until(lambda: len(_replies(publisher)) == 1, 60)
        (reply,) = _replies(publisher)
        assert not reply.ok
        assert reply.error.startswith("self_test: model 1.2.0-broken: boxes outside the")
        assert agent.detector.version == SHIPPED
        assert not (config.models.folder / DETECTOR_FOLDER / "1.2.0-broken").exists()
        assert agent.health().model_update_error == reply.error
    finally:
        agent.stop()


def test_edge_models_shows_the_detector_of_a_measuring_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from roadsense.cli.main import main
    from roadsense.edge.updates.state import HeldModel, ModelState, save_state

    folder = tmp_path / "models" / DETECTOR_FOLDER
    release = _release(folder, "1.1.0-test")
    current = HeldModel("1.1.0-test", release, sha256_file(release))
    save_state(folder, ModelState(current=current))
    config = tmp_path / "edge.toml"
    config.write_text(
        'device_id = "dev-1"\n[measure]\nenabled = true\n[models]\nfolder = "models"\n'
        f'[[cameras]]\nid = "cam1"\nsource = "{SAMPLE_VIDEO}"\nsegment_id = "seg"\n',
        encoding="utf-8",
    )
    assert main(["edge", "models", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["detector"]["start_model"] == str(release)
    assert report["detector"]["current"]["version"] == "1.1.0-test"
    assert report["detector"]["current"]["complete"] is True
    assert report["current"] is None  # the classifier's state is its own
    assert main(["edge", "models", "--config", str(config)]) == 0
    assert f"detector:\n  starts on: {release}\n  current: 1.1.0-test" in capsys.readouterr().out
