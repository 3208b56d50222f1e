"""The EfficientNet-Lite0 classifier's mechanics on small models: temperature applied the
same by every backend, the activation-map output, ONNX vs torch, and a leave-one-camera-
out that never trains on the camera it tests (checked on every fit, not trusted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from roadsense.cli.main import main
from roadsense.edge.backends.classifier import create_classifier
from roadsense.edge.backends.tensorrt import TensorRtClassifier
from roadsense.models.calibration import apply_temperature
from roadsense.models.card import load_card
from roadsense.models.congestion_labels import CONGESTION_LABELS
from roadsense.models.loco_report import camera_interval, selective_figures
from roadsense.models.training.congestion import lite_train, loco
from roadsense.models.training.congestion.efficientnet_lite import EfficientNetLite0
from roadsense.models.training.congestion.export_lite import CongestionWithMap, export_lite
from roadsense.models.training.congestion.features import FeatureSet, lite_input_spec
from roadsense.models.training.congestion.head import LinearHead, fit_head, sample_weights

from ..edge_models.test_tensorrt_backend import FakeRuntime, _frames

CLASSES = list(CONGESTION_LABELS)
TEMPERATURE = 2.5


def _random_head(family: str, features: int = 1280, seed: int = 0) -> LinearHead:
    rng = np.random.default_rng(seed)
    rows = len(CLASSES) if family == "multinomial" else 1
    return LinearHead(
        family,  # type: ignore[arg-type]
        rng.normal(0, 0.05, (rows, features)).astype(np.float32),
        rng.normal(0, 0.1, rows).astype(np.float32),
        np.asarray([-1.0, 0.0, 1.0, 2.0] if family == "ordinal" else [], np.float32),
        rng.uniform(0, 1, features).astype(np.float32),
        rng.uniform(0.5, 2, features).astype(np.float32),
    )


def _export(folder: Path, family: str) -> Path:
    torch.manual_seed(0)
    backbone = EfficientNetLite0().eval()
    return export_lite(
        backbone,
        _random_head(family),
        lite_input_spec(96, 64),
        folder,
        name=f"lite-{family}",
        version="test",
        classes=CLASSES,
        temperature=TEMPERATURE,
        description="random weights, for tests",
        reference_images=_frames(4),
        settings={},
        training_data={},
        evaluation={},
    )


@pytest.fixture(scope="module", params=["multinomial", "ordinal"])
def lite_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("lite"), str(request.param))


def test_the_card_carries_the_temperature_and_the_map_output(lite_model: Path) -> None:
    card = load_card(lite_model)
    assert card.temperature == TEMPERATURE
    assert card.cam_output_name == "activation_map"
    assert card.onnx_torch_max_abs_difference is not None
    assert card.onnx_torch_max_abs_difference <= 1e-4


def test_every_backend_applies_the_cards_temperature_the_same_way(
    lite_model: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    frames = _frames(6)
    card = load_card(lite_model)
    onnx = create_classifier("onnxruntime", lite_model)
    tensorrt = TensorRtClassifier(
        lite_model, card, {"engine_dir": tmp_path}, runtime=FakeRuntime(lite_model)
    )
    from roadsense.models.preprocess import frames_to_tensor

    session = ort.InferenceSession(str(lite_model), providers=["CPUExecutionProvider"])
    (raw,) = session.run(["probabilities"], {"images": frames_to_tensor(frames, card.input)})
    expected = apply_temperature(np.asarray(raw, np.float32), TEMPERATURE)
    got_onnx = onnx.classify(frames)
    got_tensorrt = tensorrt.classify(frames)
    assert not np.allclose(raw, expected, atol=1e-3)  # the temperature changes something
    np.testing.assert_allclose(got_onnx, expected, atol=1e-6)
    np.testing.assert_allclose(got_tensorrt, got_onnx, atol=1e-6)
    np.testing.assert_allclose(got_onnx.sum(axis=1), 1.0, atol=1e-5)
    maps_onnx = onnx.explain(frames)[1]
    maps_tensorrt = tensorrt.explain(frames)[1]
    np.testing.assert_allclose(maps_tensorrt, maps_onnx, atol=1e-6)


def test_temperature_softens_without_changing_the_ranking() -> None:
    probabilities = np.asarray([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    softer = apply_temperature(probabilities, 2.0)
    assert (softer.argmax(axis=1) == probabilities.argmax(axis=1)).all()
    assert (softer.max(axis=1) < probabilities.max(axis=1)).all()
    np.testing.assert_allclose(apply_temperature(probabilities, 1.0), probabilities)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(probabilities, 0.0)


def test_the_activation_map_is_the_head_weighted_feature_map(lite_model: Path) -> None:
    """Second output: N x H/32 x W/32, equal to the torch computation (predicted class)."""
    card = load_card(lite_model)
    frames = _frames(3)
    onnx = create_classifier("onnxruntime", lite_model)
    probabilities, maps = onnx.explain(frames)
    assert maps.shape == (3, 64 // 32, 96 // 32)
    assert probabilities.shape == (3, 5)
    torch.manual_seed(0)
    backbone = EfficientNetLite0().eval()
    head = _random_head("ordinal" if "ordinal" in lite_model.name else "multinomial")
    from roadsense.models.preprocess import frames_to_tensor

    tensor = torch.from_numpy(frames_to_tensor(frames, card.input))
    with torch.no_grad():
        features = backbone(tensor)
        _, expected = CongestionWithMap(backbone, head)(tensor)
        weight, _ = head.folded()
        if head.family == "multinomial":
            top = (features.mean(dim=(2, 3)).numpy() @ weight.T).argmax(axis=1)
            chosen = weight[top]
        else:
            chosen = np.repeat(weight, 3, axis=0)
        manual = np.einsum("nk,nkhw->nhw", chosen, features.numpy())
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(maps, manual, rtol=1e-3, atol=1e-3)


def test_stage_pooling_exports_a_map_whose_mean_is_the_class_score(tmp_path: Path) -> None:
    """``pooling = "stages"``: the head reads 2024 averages (stage ends and the last
    convolution); each map's evidence is averaged down or repeated up onto the stride-16
    grid, so the map of the predicted class averages to that class's score less its bias,
    and each cell holds the evidence of its own 16 x 16 pixels, in ONNX as in torch."""
    import onnxruntime as ort

    from roadsense.models.preprocess import frames_to_tensor
    from roadsense.models.training.congestion.efficientnet_lite import STAGE_FEATURES
    from roadsense.models.training.congestion.export_lite import ExportError
    from roadsense.models.training.congestion.features import pooled_features

    torch.manual_seed(0)
    backbone = EfficientNetLite0().eval()
    head = _random_head("multinomial", STAGE_FEATURES)
    spec = lite_input_spec(96, 64)
    frames = _frames(3)
    assert pooled_features(backbone, frames, spec, pooling="stages").shape == (3, 2024)
    common: dict[str, Any] = {
        "name": "lite-stages",
        "version": "test",
        "classes": CLASSES,
        "temperature": 1.0,
        "description": "random weights, for tests",
        "reference_images": _frames(4),
        "settings": {},
        "training_data": {},
        "evaluation": {},
        "pooling": "stages",
    }
    path = export_lite(backbone, head, spec, tmp_path, **common)
    card = load_card(path)
    assert card.settings["pooling"] == "stages"
    assert "stage ends" in card.architecture
    tensor = frames_to_tensor(frames, spec)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, maps = session.run(["probabilities", "activation_map"], {"images": tensor})
    assert maps.shape == (3, 64 // 16, 96 // 16)  # the stride-16 stages' grid
    assert card.settings["activation_map_stride"] == 16
    weight, bias = head.folded()
    with torch.no_grad():
        feature_maps = [m.numpy() for m in backbone.feature_maps(torch.from_numpy(tensor), True)]
    scores = np.concatenate([m.mean(axis=(2, 3)) for m in feature_maps], axis=1)
    scores = scores @ weight.T + bias
    top = scores.argmax(axis=1)
    assert (np.asarray(probabilities).argmax(axis=1) == top).all()
    manual = np.zeros((3, 4, 6), np.float32)
    start = 0
    for feature_map in feature_maps:  # grids 8x12 (stride 8), 4x6, 4x6, 2x3, 2x3, 2x3
        channels, height = feature_map.shape[1], feature_map.shape[2]
        evidence = np.einsum("nk,nkhw->nhw", weight[top, start : start + channels], feature_map)
        start += channels
        if height > 4:  # each 2 x 2 block of the stride-8 grid averaged into one cell
            evidence = evidence.reshape(3, 4, 2, 6, 2).mean(axis=(2, 4))
        elif height < 4:  # each stride-32 cell's evidence on its four stride-16 cells
            evidence = evidence.repeat(2, axis=1).repeat(2, axis=2)
        manual += evidence
    np.testing.assert_allclose(maps, manual, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(
        np.asarray(maps).mean(axis=(1, 2)),
        scores[np.arange(3), top] - bias[top],
        rtol=1e-3,
        atol=1e-3,
    )
    with pytest.raises(ExportError, match="multiples of 32"):
        export_lite(backbone, head, lite_input_spec(100, 64), tmp_path / "odd", **common)


def test_a_model_without_a_map_output_says_so() -> None:
    from roadsense.core.errors import ModelLoadError
    from roadsense.models.shipped import PLACEHOLDER_CNN

    with pytest.raises(ModelLoadError, match="no class activation map"):
        create_classifier("onnxruntime", PLACEHOLDER_CNN).explain(_frames(1))


def _synthetic(cameras: int = 6, per_camera: int = 10, views: int = 2) -> FeatureSet:
    """Features whose column 0 names the camera (a marker a spy can read back)."""
    rng = np.random.default_rng(1)
    names = [f"cam{c}" for c in range(cameras) for _ in range(per_camera)]
    labels = np.asarray([c % 5 for c in range(cameras) for _ in range(per_camera)], np.int64)
    features = rng.normal(0, 1, (len(names), views, 8)).astype(np.float32)
    features[:, :, 1] += labels[:, None]  # a real signal, so heads have something to fit
    features[:, :, 0] = np.asarray([int(n[3:]) for n in names], np.float32)[:, None]
    return FeatureSet(features, labels, names, CLASSES, 0.0)


def test_loco_never_trains_on_the_held_out_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _synthetic()
    fits: list[set[int]] = []
    real = fit_head

    def spy(features: Any, labels: Any, classes: int, l2: float, **kwargs: Any) -> Any:
        fits.append({int(v) for v in features[:, 0]})
        return real(features, labels, classes, l2, **kwargs)

    monkeypatch.setattr(loco, "fit_head", spy)
    boundaries: list[tuple[int, str]] = []
    settings = loco.HeadSettings(l2_grid=(1e-2,), families=("multinomial",), views=2)
    report = loco.leave_one_camera_out(
        data, settings, progress=lambda done, total, camera: boundaries.append((len(fits), camera))
    )
    start = 0
    for end, camera in boundaries:
        held_out = int(camera[3:])
        assert fits[start:end], camera
        assert all(held_out not in markers for markers in fits[start:end]), camera
        start = end
    for camera, row in report["per_camera"].items():
        assert camera not in row["trained_on_cameras"]
        assert len(row["trained_on_cameras"]) == 5
    assert set(report["per_camera"]) == {f"cam{c}" for c in range(6)}


def test_a_split_that_would_leak_is_refused() -> None:
    cameras = ["a", "a", "b", "c"]
    train, test = loco.split(cameras, ["a"])
    assert train == [2, 3]
    assert test == [0, 1]
    folds = loco.camera_folds(cameras * 3, 5)
    assert sorted(c for fold in folds for c in fold) == ["a", "b", "c"]


def test_composites_train_with_their_camera_and_are_never_scored() -> None:
    cameras = ["a", "a", "a", "b", "b", "c"]
    composite = np.asarray([False, False, True, False, True, False])
    train, test = loco.split(cameras, ["a"], composite)
    assert train == [3, 4, 5]  # b's composite trains when a is held out
    assert test == [0, 1]  # a's own composite is neither trained on nor scored
    data = _synthetic(views=2)
    marked = np.zeros(len(data.labels), dtype=bool)
    marked[::5] = True  # two composites per camera
    data.train_only = marked
    settings = loco.HeadSettings(l2_grid=(1e-2,), families=("multinomial",), views=2)
    report = loco.leave_one_camera_out(data, settings)
    assert all(row["frames"] == 8 for row in report["per_camera"].values())
    assert sum(map(sum, report["pooled"]["confusion"])) == 48


def test_the_uncertain_floor_figures_count_what_the_edge_would_report() -> None:
    # camera a: two confident right frames, one unsure wrong one (3 levels off);
    # camera b: one confident wrong frame (2 off), one unsure right one
    a = np.asarray([[0.9, 0.1, 0, 0, 0], [0.6, 0.4, 0, 0, 0], [0.3, 0.2, 0.2, 0.1, 0.2]])
    b = np.asarray([[0.0, 0.0, 0.2, 0.1, 0.7], [0.1, 0.1, 0.4, 0.2, 0.2]])
    scored = {"a": (np.asarray([0, 0, 3]), a), "b": (np.asarray([2, 2]), b)}
    low, high = selective_figures(scored, floors=(0.35, 0.65))
    assert low == {
        "floor": 0.35,
        "reported": round((2 / 3 + 1) / 2, 4),
        "accuracy_reported": round((1 + 0.5) / 2, 4),
        "gross_error_reported": round((0 + 0.5) / 2, 4),
        "wrong_made_uncertain": round((1 + 0) / 2, 4),
    }
    assert high["reported"] == round((1 / 3 + 1 / 2) / 2, 4)
    assert high["accuracy_reported"] == 0.5  # a: 1 of 1, b: 0 of 1
    assert high["gross_error_reported"] == 0.5
    data = _synthetic(views=2)
    settings = loco.HeadSettings(l2_grid=(1e-2,), families=("multinomial",), views=2)
    floors = loco.leave_one_camera_out(data, settings)["uncertain_floors"]
    assert [row["floor"] for row in floors] == [0.35, 0.45, 0.55]
    assert all(0 <= row["reported"] <= 1 for row in floors)
    assert floors[0]["reported"] >= floors[-1]["reported"]


def test_evaluate_loco_prints_the_table_and_the_floor_figures(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = loco.HeadSettings(l2_grid=(1e-2,), families=("multinomial",), views=2)
    report = {"efficientnet_lite0": loco.leave_one_camera_out(_synthetic(views=2), settings)}
    monkeypatch.setattr(lite_train, "evaluate_loco", lambda *args, **kwargs: report)
    out = tmp_path / "loco.json"
    assert main(["models", "evaluate-loco", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| **camera mean** |" in printed
    low, high = report["efficientnet_lite0"]["camera_mean_interval"]["accuracy"]
    assert f"| 95 % interval over cameras | | | {low:.2f}-{high:.2f} |" in printed
    floor = report["efficientnet_lite0"]["uncertain_floors"][0]
    assert f"uncertain below 0.35: {floor['reported']:.3f} of a camera's frames reported" in printed
    written = json.loads(out.read_text())["efficientnet_lite0"]["uncertain_floors"]
    assert [row["reported"] for row in written] == [
        row["reported"] for row in report["efficientnet_lite0"]["uncertain_floors"]
    ]


def test_the_camera_mean_interval_resamples_cameras() -> None:
    def camera(accuracy: float, ece: float = 0.1) -> dict[str, float]:
        return {"accuracy": accuracy, "gross_error_rate": 0.0, "macro_f1": accuracy, "ece": ece}

    same = camera_interval({name: camera(0.7) for name in "abcdef"})
    assert same["accuracy"] == [0.7, 0.7]  # cameras that agree leave nothing to resample
    assert same["gross_error_rate"] == [0.0, 0.0]
    split = {name: camera(1.0 if name in "abc" else 0.0) for name in "abcdef"}
    low, high = camera_interval(split)["accuracy"]
    assert 0.0 < low < 0.5 < high < 1.0  # half right, half wrong: wide around 0.5
    assert camera_interval(split) == camera_interval(split)  # seeded: the card is reproducible
    wider = camera_interval({name: camera(1.0 if name in "ab" else 0.0) for name in "abcdef"})
    assert wider["accuracy"][0] < low  # a third right: the interval moves down
    missing = camera_interval({"a": camera(1.0, float("nan")), "b": camera(0.0, 0.3)})
    assert missing["ece"] == [0.3, 0.3]  # a camera without a figure is left out of it


def test_camera_class_weighting_gives_every_camera_and_level_pair_the_same_weight() -> None:
    labels = np.asarray([0, 0, 0, 1, 0, 1, 1, 1])
    cameras = ["a", "a", "a", "a", "b", "b", "b", "b"]
    by_class = sample_weights(labels)
    assert by_class[labels == 0].sum() == pytest.approx(0.5)
    assert by_class[labels == 1].sum() == pytest.approx(0.5)
    by_pair = sample_weights(labels, cameras)
    assert by_pair.sum() == pytest.approx(1.0)
    for camera, level in [("a", 0), ("a", 1), ("b", 0), ("b", 1)]:
        mine = (np.asarray(cameras) == camera) & (labels == level)
        assert by_pair[mine].sum() == pytest.approx(0.25)
    assert by_pair[3] == pytest.approx(3 * by_pair[0])  # a's one level-1 frame weighs 3 x


def test_the_loco_fits_weigh_by_camera_and_level_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _synthetic(views=2)
    groups: list[Any] = []
    real = fit_head

    def spy(features: Any, labels: Any, classes: int, l2: float, **kwargs: Any) -> Any:
        groups.append(kwargs.get("groups"))
        return real(features, labels, classes, l2, **kwargs)

    monkeypatch.setattr(loco, "fit_head", spy)
    rows = [i for i, c in enumerate(data.cameras) if c != "cam0"]
    loco.fit(data, rows, "multinomial", 1e-2, 2)
    assert groups[-1] == [data.cameras[i] for i in rows for _ in range(2)]
    loco.fit(data, rows, "multinomial", 1e-2, 2, weighting="class")
    assert groups[-1] is None
    settings = loco.HeadSettings(l2_grid=(1e-2,), families=("multinomial",), views=2)
    loco.leave_one_camera_out(data, settings)
    assert groups[2:]
    assert all(g is not None for g in groups[2:])  # every fit of the LOCO, inner ones too


def test_the_ordinal_head_learns_an_ordered_signal() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    features = rng.normal(0, 0.3, (200, 4)).astype(np.float32)
    features[:, 0] += labels
    head = fit_head(features, labels, 5, 1e-3, family="ordinal")
    assert (np.diff(head.thresholds) > 0).all()
    accuracy = float((head.logits(features).argmax(axis=1) == labels).mean())
    assert accuracy > 0.8
