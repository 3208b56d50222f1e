"""The TensorRT backend's decisions, without a GPU: engine key, cache, build-or-load,
refusal of engines built for another setup, checks against the card, ``auto`` fallback.

The fake runtime stands in for TensorRT + CUDA only: it "builds" bytes naming its
inputs and runs the real ONNX model with ONNX Runtime, so what the backend does with
its output is checked on real frames. The CUDA runtime itself runs in bench/gpu_check.sh.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from roadsense.core.errors import ModelLoadError
from roadsense.edge.backends.classifier import available_backends, create_classifier
from roadsense.edge.backends.engines import Calibration, DeviceInfo, EngineCard, EngineRunner
from roadsense.edge.backends.tensorrt import (
    IMPORT_ERROR,
    TensorRtClassifier,
    TensorRtUnavailableError,
    cuda_runtime,
)
from roadsense.models.card import load_card
from roadsense.models.engine import EngineCache, EngineKey, Precision
from roadsense.models.preprocess import Frame
from roadsense.models.shipped import PLACEHOLDER_CNN

from ..conftest import SAMPLE_VIDEO
from ..support.helpers import roadsense_cli

ORIN = DeviceInfo(gpu_name="Orin", compute_capability="8.7", tensorrt_version="10.3.0")


class FakeRunner:
    def __init__(self, model: Path, card: EngineCard, input_hw: tuple[int, int]) -> None:
        self._session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self._card = card
        self._hw = input_hw

    def io(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        found: dict[str, tuple[str, tuple[int, ...]]] = {
            self._card.input.name: ("input", (-1, 3, *self._hw))
        }
        for output in self._session.get_outputs():
            shape = tuple(d if isinstance(d, int) else -1 for d in output.shape)
            found[output.name] = ("output", shape)
        return found

    def batch_range(self, input_name: str) -> tuple[int, int]:
        return self._card.min_batch, self._card.max_batch

    def run(self, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        names = [o.name for o in self._session.get_outputs()]
        outputs = self._session.run(names, {self._card.input.name: batch})
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(names, outputs, strict=True)}

    def close(self) -> None:
        pass


@dataclass
class FakeRuntime:
    model: Path
    info: DeviceInfo = ORIN
    input_hw: tuple[int, int] | None = None
    builds: list[tuple[str, Calibration | None]] = field(default_factory=list)

    def device(self) -> DeviceInfo:
        return self.info

    def build(
        self,
        onnx_path: Path,
        card: EngineCard,
        precision: Precision,
        calibration: Calibration | None,
    ) -> bytes:
        self.builds.append((precision, calibration))
        return f"engine {precision} {self.info.tensorrt_version}".encode()

    def load(self, engine: bytes, card: EngineCard) -> EngineRunner:
        assert engine.startswith(b"engine ")
        hw = self.input_hw or (card.input.height, card.input.width)
        return FakeRunner(self.model, card, hw)


def _frames(count: int) -> list[Frame]:
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    frames = []
    for _ in range(count):
        ok, frame = capture.read()
        assert ok
        frames.append(cast(Frame, frame))
    capture.release()
    return frames


def _classifier(runtime: FakeRuntime, engines: Path, **options: object) -> TensorRtClassifier:
    return TensorRtClassifier(
        PLACEHOLDER_CNN,
        load_card(PLACEHOLDER_CNN),
        {"engine_dir": engines, **options},
        runtime=runtime,
    )


def test_the_engine_is_built_once_then_loaded_from_the_cache(tmp_path: Path) -> None:
    runtime = FakeRuntime(PLACEHOLDER_CNN)
    first = _classifier(runtime, tmp_path)
    assert first.built
    second = _classifier(runtime, tmp_path)
    assert not second.built
    assert second.engine_path == first.engine_path
    assert len(runtime.builds) == 1
    assert "fp16" in first.engine_path.name
    assert "sm87" in first.engine_path.name
    frames = _frames(4)
    reference = create_classifier("onnxruntime", PLACEHOLDER_CNN).classify(frames)
    np.testing.assert_allclose(second.classify(frames), reference, atol=1e-6)


def test_an_engine_from_another_tensorrt_or_gpu_is_never_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = _classifier(
        FakeRuntime(PLACEHOLDER_CNN, replace(ORIN, tensorrt_version="8.6.2")), tmp_path
    )
    upgraded = FakeRuntime(PLACEHOLDER_CNN)
    new = _classifier(upgraded, tmp_path)
    assert new.built
    assert new.engine_path != old.engine_path
    assert "tensorrt_version: 8.6.2 != 10.3.0" in caplog.text
    other_gpu = FakeRuntime(
        PLACEHOLDER_CNN, replace(ORIN, gpu_name="Xavier", compute_capability="7.2")
    )
    assert _classifier(other_gpu, tmp_path).built
    assert len(list(tmp_path.glob("*.engine"))) == 3


def test_an_engine_whose_recorded_key_differs_is_not_trusted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = FakeRuntime(PLACEHOLDER_CNN)
    engine = _classifier(runtime, tmp_path).engine_path
    sidecar = engine.with_name(engine.name + ".json")
    recorded = json.loads(sidecar.read_text())
    recorded["onnx_sha256"] = "0" * 64  # e.g. copied over from another model
    sidecar.write_text(json.dumps(recorded))
    assert _classifier(runtime, tmp_path).built
    assert "built for another setup" in caplog.text
    assert len(runtime.builds) == 2


def test_without_a_cached_engine_and_building_off_start_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="roadsense models build-engine"):
        _classifier(FakeRuntime(PLACEHOLDER_CNN), tmp_path, build_engine=False)


def test_an_engine_not_matching_the_card_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not match the card"):
        _classifier(FakeRuntime(PLACEHOLDER_CNN, input_hw=(128, 128)), tmp_path)


def test_int8_needs_calibration_frames_and_reads_them_as_the_card_says(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="int8 needs calibration_images"):
        _classifier(FakeRuntime(PLACEHOLDER_CNN), tmp_path / "engines", precision="int8")
    images = tmp_path / "frames"
    images.mkdir()
    for i, frame in enumerate(_frames(5)):
        cv2.imwrite(str(images / f"{i}.png"), frame)
    runtime = FakeRuntime(PLACEHOLDER_CNN)
    _classifier(runtime, tmp_path / "engines", precision="int8", calibration_images=images)
    ((precision, calibration),) = runtime.builds
    assert precision == "int8"
    assert calibration is not None
    assert calibration.cache_file.parent == tmp_path / "engines"
    card = load_card(PLACEHOLDER_CNN)
    shapes = [b.shape for b in replace(calibration, batch=2).batches()]
    assert shapes == [(2, 3, card.input.height, card.input.width)] * 2 + [
        (1, 3, card.input.height, card.input.width)
    ]


def test_bad_options_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="precision must be one of fp32, fp16, int8"):
        _classifier(FakeRuntime(PLACEHOLDER_CNN), tmp_path, precision="fp8")


def test_engine_key_covers_every_field() -> None:
    key = EngineKey("a" * 64, "10.3.0", "Orin", "8.7", "fp16", 1, 32)
    variants = [
        replace(key, onnx_sha256="b" * 64),
        replace(key, tensorrt_version="10.3.1"),
        replace(key, gpu_name="Orin Nano"),
        replace(key, compute_capability="8.6"),
        replace(key, precision="int8"),
        replace(key, min_batch=2),
        replace(key, max_batch=16),
    ]
    digests = {key.digest(), *(v.digest() for v in variants)}
    assert len(digests) == 8
    assert key.digest() == EngineKey("a" * 64, "10.3.0", "Orin", "8.7", "fp16", 1, 32).digest()


def test_cache_writes_leave_no_partial_files(tmp_path: Path) -> None:
    key = EngineKey("a" * 64, "10.3.0", "Orin", "8.7", "fp16", 1, 32)
    cache = EngineCache(tmp_path)
    path = cache.store(key, "model", b"bytes")
    assert cache.lookup(key, "model") == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".json"]


@pytest.mark.skipif(not IMPORT_ERROR, reason="this machine has TensorRT and pycuda")
def test_without_tensorrt_auto_falls_back_to_onnxruntime_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert {"auto", "tensorrt", "onnxruntime"} <= set(available_backends())
    with pytest.raises(TensorRtUnavailableError, match="cannot be imported"):
        cuda_runtime()
    classifier = create_classifier("auto", PLACEHOLDER_CNN)
    assert classifier.key == "onnxruntime"
    assert "not TensorRT (TensorRT/pycuda cannot be imported" in caplog.text
    result = roadsense_cli("models", "build-engine", "--model", str(PLACEHOLDER_CNN))
    assert result.returncode == 1
    assert "TensorRT/pycuda cannot be imported" in result.stderr
    assert "Traceback" not in result.stderr
