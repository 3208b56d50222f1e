"""A tiny adapt run: a Lite0 classifier's head fine-tuned on a few labelled frames of one
camera moves towards their labels; the card keeps input, temperature and lineage."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadsense.edge.backends.classifier import create_classifier
from roadsense.models.card import load_card
from roadsense.models.training.congestion.adapt import head_from_onnx
from roadsense.models.training.congestion.efficientnet_lite import pretrained_lite0
from roadsense.models.training.congestion.export_lite import export_lite
from roadsense.models.training.congestion.features import lite_input_spec

from ..edge_models.test_tensorrt_backend import _frames
from ..support.helpers import roadsense_cli
from .test_lite_classifier import CLASSES, _random_head


@pytest.mark.integration
def test_adapting_to_a_few_frames_moves_the_model_towards_their_labels(tmp_path: Path) -> None:
    frames = _frames(40)[::4]  # ten frames of the highway clip
    source = export_lite(
        pretrained_lite0(),
        _random_head("multinomial"),
        lite_input_spec(96, 64),
        tmp_path / "source",
        name="lite",
        version="1.0",
        classes=CLASSES,
        temperature=1.7,
        description="random head",
        reference_images=frames,
        settings={},
        training_data={},
        evaluation={},
    )
    images = tmp_path / "camera"
    for i, frame in enumerate(frames):
        label = "light" if i % 2 else "moderate"
        (images / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(images / label / f"f{i}.png"), frame)
    before = create_classifier("onnxruntime", source).classify(frames)
    result = roadsense_cli(
        "train", "congestion", "--adapt", str(source), "--images", str(images),
        "--out", str(tmp_path / "adapted"), "--name", "lite", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    adapted = Path(json.loads(result.stdout.strip().splitlines()[-1])["model"])
    card = load_card(adapted)
    assert card.version == "1.0-adapted"
    assert card.temperature == 1.7
    assert card.input == load_card(source).input
    assert card.evaluation["adapt_frames"] == 10
    after = create_classifier("onnxruntime", adapted).classify(frames)
    truth = np.asarray([CLASSES.index("light" if i % 2 else "moderate") for i in range(10)])
    likelihood_before = before[np.arange(10), truth].mean()
    likelihood_after = after[np.arange(10), truth].mean()
    assert likelihood_after > likelihood_before
    assert not np.allclose(
        head_from_onnx(adapted, "multinomial").weight, head_from_onnx(source, "multinomial").weight
    )
