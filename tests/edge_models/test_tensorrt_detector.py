"""The detector's TensorRT backend without a GPU: its engine is built once and cached
beside the classifier's, checked against the detector card, and its boxes are the ONNX
Runtime detector's on real frames (the fake runtime runs the real ONNX). The CUDA runtime
itself runs in bench/gpu_check.sh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from roadsense.core.errors import ModelLoadError
from roadsense.edge.backends.detector import create_detector
from roadsense.edge.backends.tensorrt import TensorRtClassifier, TensorRtDetector
from roadsense.models.card import load_card
from roadsense.models.detection.card import load_detector_card
from roadsense.models.shipped import DEFAULT_DETECTOR, PLACEHOLDER_CNN

from .test_tensorrt_backend import FakeRuntime, _frames


def _detector(runtime: FakeRuntime, engines: Path, **options: object) -> TensorRtDetector:
    return TensorRtDetector(
        DEFAULT_DETECTOR,
        load_detector_card(DEFAULT_DETECTOR),
        {"engine_dir": engines, **options},
        runtime=runtime,
    )


def test_the_detector_engine_is_built_once_and_finds_what_onnx_runtime_finds(
    tmp_path: Path,
) -> None:
    runtime = FakeRuntime(DEFAULT_DETECTOR)
    first = _detector(runtime, tmp_path)
    second = _detector(runtime, tmp_path)
    assert (first.built, second.built) == (True, False)
    assert second.engine_path == first.engine_path
    assert first.engine_path.name.startswith("detector")
    assert [precision for precision, _ in runtime.builds] == ["fp16"]
    frames = _frames(3)
    reference = create_detector("onnxruntime", DEFAULT_DETECTOR).detect(frames)
    found = second.detect(frames)
    assert sum(len(f) for f in reference) > 0  # the clip has vehicles to find
    for ours, theirs in zip(found, reference, strict=True):
        np.testing.assert_allclose(ours.xyxy, theirs.xyxy, atol=1e-3)
        assert list(ours.data["class_name"]) == list(theirs.data["class_name"])
    # The classifier's engine lives in the same cache under its own key.
    classifier = TensorRtClassifier(
        PLACEHOLDER_CNN,
        load_card(PLACEHOLDER_CNN),
        {"engine_dir": tmp_path},
        runtime=FakeRuntime(PLACEHOLDER_CNN),
    )
    assert classifier.built
    assert len(list(tmp_path.glob("*.engine"))) == 2


def test_a_detector_engine_not_matching_its_card_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not match the card"):
        _detector(FakeRuntime(DEFAULT_DETECTOR, input_hw=(416, 416)), tmp_path)


def test_int8_is_refused_for_the_detector_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="use fp16 or fp32 for this model"):
        _detector(FakeRuntime(DEFAULT_DETECTOR), tmp_path, precision="int8")


def test_auto_runs_the_detector_on_onnx_runtime_where_tensorrt_does_not_load() -> None:
    detector = create_detector("auto", DEFAULT_DETECTOR)
    assert detector.key == "onnxruntime"
    detector.close()
