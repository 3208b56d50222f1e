"""Classifier backends: load, check against the card, classify real frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import pytest

from roadsense.core.errors import ModelLoadError, UnknownBackendError
from roadsense.edge.backends.classifier import available_backends, create_classifier
from roadsense.models.card import card_path_for, load_card
from roadsense.models.preprocess import Frame
from roadsense.models.shipped import PLACEHOLDER_CNN

from ..conftest import SAMPLE_VIDEO


def _frames(count: int, step: int = 150) -> list[Frame]:
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    frames: list[Frame] = []
    index = 0
    while len(frames) < count:
        ok, frame = capture.read()
        assert ok, "clip ended early"
        if index % step == 0:
            frames.append(cast(Frame, frame))
        index += 1
    capture.release()
    return frames


def test_placeholder_card_says_placeholder() -> None:
    card = load_card(PLACEHOLDER_CNN)
    assert card.placeholder is True
    assert "PLACEHOLDER" in card.description
    assert card.labels == ["free", "light", "moderate", "heavy", "jammed"]


def test_onnxruntime_classifies_real_frames() -> None:
    classifier = create_classifier("onnxruntime", PLACEHOLDER_CNN)
    probabilities = classifier.classify(_frames(10))
    assert probabilities.shape == (10, 5)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # Real footage of varying density: the placeholder does not answer one class only.
    assert len(set(probabilities.argmax(axis=1).tolist())) > 1


def test_batch_is_bounded_by_the_card() -> None:
    classifier = create_classifier("onnxruntime", PLACEHOLDER_CNN)
    frame = _frames(1)[0]
    with pytest.raises(ValueError, match=r"allowed 1\.\.32"):
        classifier.classify([frame] * 33)
    with pytest.raises(ValueError, match="batch of 0"):
        classifier.classify([])


def test_unknown_backend_fails_loudly() -> None:
    assert "onnxruntime" in available_backends()
    with pytest.raises(UnknownBackendError, match="unknown classifier backend 'cuda-magic'"):
        create_classifier("cuda-magic", PLACEHOLDER_CNN)


def _copy_model(tmp_path: Path) -> Path:
    target = tmp_path / PLACEHOLDER_CNN.name
    shutil.copy(PLACEHOLDER_CNN, target)
    shutil.copy(card_path_for(PLACEHOLDER_CNN), card_path_for(target))
    return target


def test_model_not_matching_its_card_sha_is_refused(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match="does not match its card"):
        create_classifier("onnxruntime", model)


def test_card_input_size_mismatch_is_caught_at_load(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    card_file = card_path_for(model)
    card = json.loads(card_file.read_text())
    card["input"]["width"] = 128
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=r"input shape .* does not match the card"):
        create_classifier("onnxruntime", model)


def test_missing_card_is_a_clear_error(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    card_path_for(model).unlink()
    with pytest.raises(ModelLoadError, match="cannot read model card"):
        create_classifier("onnxruntime", model)
