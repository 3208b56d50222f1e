"""Congestion CNN: a tiny training run on real frames, export, and the edge loading it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import pytest
import torch

from roadsense.core.errors import ModelLoadError
from roadsense.edge.backends.classifier import create_classifier
from roadsense.models.card import load_card
from roadsense.models.image_sets import DatasetError, class_names, classification_report
from roadsense.models.preprocess import Frame, frames_to_tensor
from roadsense.models.training.congestion.mobilenet import MobileNetV3Small
from roadsense.models.training.congestion.train import CnnSettings, input_spec

from ..conftest import SAMPLE_VIDEO
from ..support.helpers import roadsense_cli


def _clip_frames(count: int, step: int) -> list[Frame]:
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    frames: list[Frame] = []
    index = 0
    while len(frames) < count:
        ok, frame = capture.read()
        assert ok
        if index % step == 0:
            frames.append(cast(Frame, frame))
        index += 1
    capture.release()
    return frames


def _class_folders(root: Path, frames: list[Frame]) -> None:
    # Two visually different classes: the clip as it is, and a darkened copy.
    for i, frame in enumerate(frames):
        (root / "free").mkdir(parents=True, exist_ok=True)
        (root / "jammed").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "free" / f"{i}.png"), frame)
        cv2.imwrite(str(root / "jammed" / f"{i}.png"), (frame * 0.3).astype(np.uint8))


def test_mobilenet_v3_small_has_the_papers_shape() -> None:
    network = MobileNetV3Small(5).eval()
    with torch.no_grad():
        logits = network(torch.zeros(2, 3, 224, 224))
    assert logits.shape == (2, 5)
    # 1000 classes would be the paper's ~2.5 M parameters; 5 classes drop ~1 M of head.
    parameters = sum(p.numel() for p in MobileNetV3Small(1000).parameters())
    assert 2.4e6 < parameters < 2.6e6


def test_a_tiny_training_run_exports_a_model_the_edge_runs(tmp_path: Path) -> None:
    frames = _clip_frames(12, 120)
    _class_folders(tmp_path / "train", frames[:8])
    _class_folders(tmp_path / "holdout", frames[8:])
    # A test set may hold only some of the classes: here 4 darkened frames only.
    (tmp_path / "unseen" / "jammed").mkdir(parents=True)
    for i, frame in enumerate(frames[8:]):
        cv2.imwrite(
            str(tmp_path / "unseen" / "jammed" / f"{i}.png"), (frame * 0.3).astype(np.uint8)
        )
    result = roadsense_cli(
        "train", "congestion", "--images", str(tmp_path / "train"),
        "--holdout", str(tmp_path / "holdout"), "--unseen", str(tmp_path / "unseen"),
        "--out", str(tmp_path / "model"),
        "--epochs", "1", "--width", "64", "--height", "48", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["holdout"]["images"] == 8
    assert figures["validation"]["confusion"]["rows_true_cols_predicted"] == ["free", "jammed"]
    model = tmp_path / "model" / "congestion.onnx"
    card = load_card(model)
    assert card.placeholder is False
    assert card.labels == ["free", "jammed"]
    assert (card.input.width, card.input.height) == (64, 48)
    assert card.onnx_torch_max_abs_difference is not None
    assert card.onnx_torch_max_abs_difference <= 1e-4
    assert card.evaluation["holdout"]["images"] == 8
    unseen = card.evaluation["unseen_camera"]
    assert unseen["images"] == 4
    assert unseen["confusion"]["rows_true_cols_predicted"] == ["free", "jammed"]
    assert sum(unseen["confusion"]["matrix"][0]) == 0  # no free image in that set
    assert sum(unseen["confusion"]["matrix"][1]) == 4
    assert card.training_data["unseen_camera"]["folder"] == str(tmp_path / "unseen")
    assert card.training_data["per_class"] == {"free": 8, "jammed": 8}
    classifier = create_classifier("onnxruntime", model)
    probabilities = classifier.classify(frames[:3])
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_the_card_drives_preprocessing() -> None:
    frame = _clip_frames(1, 1)[0]
    spec = input_spec(CnnSettings(width=64, height=48))
    tensor = frames_to_tensor([frame], spec)
    assert tensor.shape == (1, 3, 48, 64)
    # RGB order and ImageNet normalisation: channel 0 is red, scaled and centred.
    red = cv2.resize(frame, (64, 48))[:, :, 2].astype(np.float32) / 255
    np.testing.assert_allclose(tensor[0, 0], (red - 0.485) / 0.229, atol=2e-2)


def test_classification_report_equals_hand_computed_figures() -> None:
    truth = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    report = classification_report(truth, predicted, ["free", "heavy", "jammed"])
    assert report["accuracy"] == round(4 / 6, 4)
    # F1: free 2*(1/2*1/2)/(1) = 0.5; heavy p=2/3 r=1 -> 0.8; jammed p=1 r=1/2 -> 2/3.
    assert report["f1"] == {"free": 0.5, "heavy": 0.8, "jammed": 0.6667}
    assert report["macro_f1"] == round((0.5 + 0.8 + 2 / 3) / 3, 4)
    assert report["confusion"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_bad_image_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder of class folders"):
        class_names(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    with pytest.raises(DatasetError, match="at least two class folders"):
        class_names(tmp_path)
    result = roadsense_cli(
        "train", "congestion", "--images", str(tmp_path / "missing"), "--out", str(tmp_path)
    )
    assert result.returncode == 1
    assert "not a folder of class folders" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_whose_input_differs_from_its_card_fails_at_load(tmp_path: Path) -> None:
    frames = _clip_frames(4, 200)
    _class_folders(tmp_path / "train", frames)
    result = roadsense_cli(
        "train", "congestion", "--images", str(tmp_path / "train"), "--out",
        str(tmp_path / "model"), "--epochs", "1", "--width", "64", "--height", "48",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    card_file = tmp_path / "model" / "congestion.card.json"
    card = json.loads(card_file.read_text())
    card["input"]["width"] = 96
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="does not match the card"):
        create_classifier("onnxruntime", tmp_path / "model" / "congestion.onnx")
