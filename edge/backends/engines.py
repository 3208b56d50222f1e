"""TensorRT engines, decided without a GPU: which engine a model needs on this device,
whether the cache holds it, building it once, and checking it against the model's card.

An engine is keyed by the ONNX sha256 from the card, the TensorRT version, the GPU's name
and compute capability, the precision and the batch range; one built for another TensorRT
or GPU is never loaded. Both measuring models use this: the congestion classifier
(``ModelCard``) and the vehicle detector (``DetectorCard``), each through ``EngineCard``,
the part of a card an engine needs. The GPU-facing parts sit behind the small ``Runtime``
protocol; ``roadsense.edge.backends.tensorrt`` is the real one (TensorRT + pycuda), and
the tests stand a fake in for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from roadsense.core.errors import ModelLoadError
from roadsense.models.card import ModelCard
from roadsense.models.engine import PRECISIONS, EngineCache, EngineKey, Precision
from roadsense.models.preprocess import Frame, frames_to_tensor

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class TensorSpec(Protocol):
    """The input tensor of a card: its name and the frame size it takes."""

    @property
    def name(self) -> str:
        """Name of the input tensor."""

    @property
    def width(self) -> int:
        """Input width in pixels."""

    @property
    def height(self) -> int:
        """Input height in pixels."""


class EngineCard(Protocol):
    """What an engine is built and checked from (the classifier's and the detector's card
    both have it)."""

    @property
    def onnx_sha256(self) -> str:
        """sha256 of the ONNX the engine is built from."""

    @property
    def min_batch(self) -> int:
        """Smallest batch of the optimisation profile."""

    @property
    def max_batch(self) -> int:
        """Largest batch of the optimisation profile."""

    @property
    def input(self) -> TensorSpec:
        """The input tensor."""

    @property
    def output_name(self) -> str:
        """The output every inference reads."""


def default_engine_dir() -> Path:
    """Engines live in the user's cache, not beside a model that may be read-only."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "roadsense" / "engines"


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU and TensorRT an engine would be built for."""

    gpu_name: str
    compute_capability: str
    tensorrt_version: str


@dataclass(frozen=True)
class Calibration:
    """INT8 calibration: frames from a folder, preprocessed as the card says."""

    images: Path
    cache_file: Path
    card: ModelCard
    batch: int = 8

    def batches(self) -> Iterator[npt.NDArray[np.float32]]:
        """NCHW float32 batches of the folder's images."""
        import cv2

        files = sorted(p for p in self.images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ModelLoadError(f"{self.images}: no images to calibrate INT8 with")
        for start in range(0, len(files), self.batch):
            frames: list[Frame] = []
            for path in files[start : start + self.batch]:
                image = cv2.imread(str(path))
                if image is None:
                    raise ModelLoadError(f"{path}: not an image OpenCV can read")
                frames.append(np.asarray(image, dtype=np.uint8))
            yield frames_to_tensor(frames, self.card.input)


class EngineRunner(Protocol):
    """A deserialised engine, ready to run."""

    def io(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Tensor name -> ('input' | 'output', shape with -1 for dynamic dims)."""

    def batch_range(self, input_name: str) -> tuple[int, int]:
        """(min, max) batch of the optimisation profile."""

    def run(self, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        """Every output tensor (probabilities, and the activation map where the model has
        one) by name, for a batch within the range."""

    def close(self) -> None:
        """Free device memory."""


class Runtime(Protocol):
    """What the backend needs from TensorRT and CUDA."""

    def device(self) -> DeviceInfo:
        """The GPU in use and the TensorRT version."""

    def build(
        self,
        onnx_path: Path,
        card: EngineCard,
        precision: Precision,
        calibration: Calibration | None,
    ) -> bytes:
        """Parse the ONNX and build a serialised engine for the card's batch range."""

    def load(self, engine: bytes, card: EngineCard) -> EngineRunner:
        """Deserialise an engine and allocate its buffers."""


@dataclass(frozen=True)
class TensorRtOptions:
    """Backend options from the edge configuration."""

    precision: Precision = "fp16"
    engine_dir: Path | None = None
    build: bool = True
    calibration_images: Path | None = None

    @classmethod
    def parse(cls, options: dict[str, object]) -> TensorRtOptions:
        """Options dict (from the edge config) -> checked options."""
        precision = options.get("precision", "fp16")
        if precision not in PRECISIONS:
            raise ModelLoadError(f"precision must be one of {', '.join(PRECISIONS)}")
        engine_dir = options.get("engine_dir")
        calibration = options.get("calibration_images")
        build = options.get("build_engine", True)
        if not isinstance(build, bool):
            raise ModelLoadError("build_engine must be true or false")
        return cls(
            precision=precision,
            engine_dir=Path(str(engine_dir)) if engine_dir else None,
            build=build,
            calibration_images=Path(str(calibration)) if calibration else None,
        )


def engine_key(card: EngineCard, device: DeviceInfo, precision: Precision) -> EngineKey:
    """The cache key of this model on this device."""
    return EngineKey(
        onnx_sha256=card.onnx_sha256,
        tensorrt_version=device.tensorrt_version,
        gpu_name=device.gpu_name,
        compute_capability=device.compute_capability,
        precision=precision,
        min_batch=card.min_batch,
        max_batch=card.max_batch,
    )


def ensure_engine(
    model_path: Path,
    card: EngineCard,
    options: TensorRtOptions,
    runtime: Runtime,
) -> tuple[Path, bool]:
    """The engine for this model on this device: (path, whether it was built now)."""
    device = runtime.device()
    key = engine_key(card, device, options.precision)
    cache = EngineCache(options.engine_dir or default_engine_dir())
    name = model_path.stem
    found = cache.lookup(key, name)
    if found is not None:
        return found, False
    for path, why in cache.stale_engines(key, name):
        logger.info("not reusing %s, built for another setup (%s)", path.name, "; ".join(why))
    if not options.build:
        raise ModelLoadError(
            f"no TensorRT engine of {model_path.name} for {device.gpu_name} "
            f"(sm {device.compute_capability}, TensorRT {device.tensorrt_version}, "
            f"{options.precision}) in {cache.root}; build it with `roadsense models "
            "build-engine` or allow build_engine"
        )
    calibration = None
    if options.precision == "int8":
        if not isinstance(card, ModelCard):
            raise ModelLoadError(
                f"{model_path.name}: int8 calibration is made for the classifier's input; "
                "use fp16 or fp32 for this model"
            )
        if options.calibration_images is None:
            raise ModelLoadError("int8 needs calibration_images (a folder of frames)")
        calibration = Calibration(
            options.calibration_images,
            cache.root / f"{name}-{card.onnx_sha256[:12]}.calibration",
            card,
        )
    logger.warning(
        "building the TensorRT %s engine of %s for %s; this takes minutes, once: it is "
        "cached in %s",
        options.precision,
        model_path.name,
        device.gpu_name,
        cache.root,
    )
    engine = runtime.build(model_path, card, options.precision, calibration)
    return cache.store(key, name, engine), True


def check_engine(
    runner: EngineRunner, card: EngineCard, source: Path, outputs: Sequence[str]
) -> None:
    """Refuse an engine whose tensors do not match the card (``outputs``: the output names
    the backend reads)."""
    io = runner.io()
    spec = card.input
    if io.get(spec.name, ("", ()))[0] != "input":
        raise ModelLoadError(f"{source}: engine has no input {spec.name!r} (has {sorted(io)})")
    if list(io[spec.name][1][1:]) != [3, spec.height, spec.width]:
        raise ModelLoadError(
            f"{source}: engine input shape {io[spec.name][1]} does not match the card "
            f"(N, 3, {spec.height}, {spec.width})"
        )
    for name in outputs:
        if io.get(name, ("", ()))[0] != "output":
            raise ModelLoadError(f"{source}: engine has no output {name!r}")
    low, high = runner.batch_range(spec.name)
    if low > card.min_batch or high < card.max_batch:
        raise ModelLoadError(
            f"{source}: engine profile batches {low}..{high}, card needs "
            f"{card.min_batch}..{card.max_batch}"
        )


def open_engine(
    model_path: Path,
    card: EngineCard,
    options: dict[str, object],
    runtime: Runtime,
    outputs: Sequence[str],
) -> tuple[EngineRunner, Path, bool]:
    """What every TensorRT backend does at start: read its options, find or build the
    engine, load it and check it against the card. (runner, engine path, built now)."""
    path, built = ensure_engine(model_path, card, TensorRtOptions.parse(options), runtime)
    runner = runtime.load(path.read_bytes(), card)
    check_engine(runner, card, path, outputs)
    return runner, path, built
