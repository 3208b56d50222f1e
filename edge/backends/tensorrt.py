"""TensorRT backends of the classifier and the detector: the only module that imports
``tensorrt`` and ``pycuda``.

The engine decisions (key, cache, build-or-load, checks against the card) are in
``roadsense.edge.backends.engines``; this module holds the two backends and the real
runtime. Inference uses the TensorRT >= 8.5 named-tensor API (``num_io_tensors``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``), so the same code runs
on JetPack 5 (TensorRT 8.5/8.6) and JetPack 6 (TensorRT 10): page-locked host buffers and
device buffers sized for the largest batch, one CUDA stream, asynchronous copies, and any
batch within the engine's optimisation profile. The real runtime is exercised by
``bench/gpu_check.sh``; the tests run the backends on a fake one.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from roadsense.core.errors import ModelLoadError
from roadsense.edge.backends.classifier import Classifier, register
from roadsense.edge.backends.detector import Detector, register_detector
from roadsense.edge.backends.engines import (
    Calibration,
    DeviceInfo,
    EngineCard,
    EngineRunner,
    Runtime,
    open_engine,
)
from roadsense.models.card import ModelCard
from roadsense.models.detection.card import DetectorCard
from roadsense.models.engine import Precision

# Only NVIDIA machines have these; everything else must run without them.
cuda: Any = None
trt: Any = None
IMPORT_ERROR = ""
try:
    cuda = importlib.import_module("pycuda.driver")
    trt = importlib.import_module("tensorrt")
except ImportError as err:  # pragma: no cover - depends on the machine
    cuda = trt = None
    IMPORT_ERROR = str(err)

logger = logging.getLogger(__name__)


class TensorRtUnavailableError(ModelLoadError):
    """TensorRT or pycuda cannot be imported, or there is no CUDA GPU."""


class TensorRtClassifier(Classifier):
    """Runs the card's model as a TensorRT engine built for this device."""

    key = "tensorrt"

    def __init__(
        self,
        model_path: Path,
        card: ModelCard,
        options: dict[str, object],
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(model_path, card)
        outputs = [card.output_name, *([card.cam_output_name] if card.cam_output_name else [])]
        self._runner, self.engine_path, self.built = open_engine(
            model_path, card, options, runtime or cuda_runtime(), outputs
        )
        warmup = np.zeros((card.input.height, card.input.width, 3), dtype=np.uint8)
        self.classify([warmup])

    def _infer(self, tensor: npt.NDArray[np.float32], outputs: list[str]) -> list[Any]:
        produced = self._runner.run(tensor)
        return [produced[name] for name in outputs]

    def close(self) -> None:
        """Free the engine's device memory."""
        self._runner.close()


@register(TensorRtClassifier.key)
def _create(model_path: Path, card: ModelCard, options: dict[str, object]) -> Classifier:
    return TensorRtClassifier(model_path, card, options)


class TensorRtDetector(Detector):
    """Runs the detector card's model as a TensorRT engine built for this device (fp16 or
    fp32; int8 calibration is the classifier's)."""

    key = "tensorrt"

    def __init__(
        self,
        model_path: Path,
        card: DetectorCard,
        options: dict[str, object],
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(model_path, card, options)
        self._runner, self.engine_path, self.built = open_engine(
            model_path, card, options, runtime or cuda_runtime(), [card.output_name]
        )
        self.detect([np.zeros((card.input.height, card.input.width, 3), dtype=np.uint8)])

    def _infer(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(self._runner.run(tensor)[self.card.output_name], dtype=np.float32)

    def close(self) -> None:
        """Free the engine's device memory."""
        self._runner.close()


@register_detector(TensorRtDetector.key)
def _create_detector(model_path: Path, card: DetectorCard, options: dict[str, object]) -> Detector:
    return TensorRtDetector(model_path, card, options)


# The real runtime: TensorRT + pycuda --------------------------------------------


def cuda_runtime() -> Runtime:
    """TensorRT and CUDA on this machine, or TensorRtUnavailableError saying why not."""
    if trt is None or cuda is None:
        raise TensorRtUnavailableError(f"TensorRT/pycuda cannot be imported: {IMPORT_ERROR}")
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            raise TensorRtUnavailableError("no CUDA GPU found")
    except cuda.Error as err:
        raise TensorRtUnavailableError(f"CUDA cannot start: {err}") from err
    return _CudaRuntime()


class _CudaRuntime:  # pragma: no cover - runs on NVIDIA machines only (bench/gpu_check.sh)
    def __init__(self) -> None:
        self._device = cuda.Device(0)
        self._context = self._device.retain_primary_context()
        self._logger = trt.Logger(trt.Logger.WARNING)

    def device(self) -> DeviceInfo:
        major, minor = self._device.compute_capability()
        return DeviceInfo(self._device.name(), f"{major}.{minor}", str(trt.__version__))

    def build(
        self,
        onnx_path: Path,
        card: EngineCard,
        precision: Precision,
        calibration: Calibration | None,
    ) -> bytes:
        self._context.push()
        try:
            return _build(self._logger, onnx_path, card, precision, calibration)
        finally:
            self._context.pop()

    def load(self, engine: bytes, card: EngineCard) -> EngineRunner:
        self._context.push()
        try:
            runtime = trt.Runtime(self._logger)
            deserialised = runtime.deserialize_cuda_engine(engine)
            if deserialised is None:
                raise ModelLoadError("TensorRT could not deserialise the engine")
            return _CudaRunner(deserialised, card, self._context)
        finally:
            self._context.pop()


def _build(  # pragma: no cover - GPU only
    logger_: Any, onnx_path: Path, card: EngineCard, precision: Precision, calibration: Any
) -> bytes:
    builder = trt.Builder(logger_)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0
    if major < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger_)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    spec = card.input
    profile = builder.create_optimization_profile()
    shape = (3, spec.height, spec.width)
    optimum = max(card.min_batch, min(card.max_batch, 8))
    profile.set_shape(
        spec.name, (card.min_batch, *shape), (optimum, *shape), (card.max_batch, *shape)
    )
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8") and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(calibration, (card.max_batch, *shape))
        config.set_calibration_profile(profile)
    serialised = builder.build_serialized_network(network, config)
    if serialised is None:
        raise ModelLoadError(f"{onnx_path}: TensorRT failed to build a {precision} engine")
    return bytes(serialised)


def _calibrator(calibration: Calibration, max_shape: tuple[int, ...]) -> Any:  # pragma: no cover
    """An entropy calibrator over the folder's frames, keeping its cache file."""

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = calibration.batches()
            self._device = cuda.mem_alloc(int(np.prod(max_shape)) * 4)

        def get_batch_size(self) -> int:
            return calibration.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            cuda.memcpy_htod(self._device, np.ascontiguousarray(batch))
            return [int(self._device)]

        def read_calibration_cache(self) -> bytes | None:
            path = calibration.cache_file
            return path.read_bytes() if path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            calibration.cache_file.parent.mkdir(parents=True, exist_ok=True)
            calibration.cache_file.write_bytes(bytes(cache))

    return _EntropyCalibrator()


class _CudaRunner:  # pragma: no cover - GPU only
    """Buffers for the largest batch, one stream, named-tensor execution."""

    def __init__(self, engine: Any, card: EngineCard, context: Any) -> None:
        self._engine = engine
        self._card = card
        self._cuda_context = context
        self._context = engine.create_execution_context()
        self._stream = cuda.Stream()
        spec = card.input
        self._input = spec.name
        batch = card.max_batch
        self._host_in = cuda.pagelocked_empty((batch, 3, spec.height, spec.width), np.float32)
        self._device_in = cuda.mem_alloc(self._host_in.nbytes)
        # TensorRT needs an address for every output, the activation map included.
        self._host_out: dict[str, Any] = {}
        self._device_out: dict[str, Any] = {}
        for name, (kind, shape) in self.io().items():
            if kind == "output":
                full = (batch, *(d if d > 0 else 1 for d in shape[1:]))
                self._host_out[name] = cuda.pagelocked_empty(full, np.float32)
                self._device_out[name] = cuda.mem_alloc(self._host_out[name].nbytes)

    def io(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        result = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            mode = self._engine.get_tensor_mode(name)
            kind = "input" if mode == trt.TensorIOMode.INPUT else "output"
            result[name] = (kind, tuple(int(d) for d in self._engine.get_tensor_shape(name)))
        return result

    def batch_range(self, input_name: str) -> tuple[int, int]:
        low, _, high = self._engine.get_tensor_profile_shape(input_name, 0)
        return int(low[0]), int(high[0])

    def run(self, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        n = batch.shape[0]
        self._cuda_context.push()
        try:
            self._host_in[:n] = batch
            self._context.set_input_shape(self._input, tuple(batch.shape))
            self._context.set_tensor_address(self._input, int(self._device_in))
            for name, device in self._device_out.items():
                self._context.set_tensor_address(name, int(device))
            cuda.memcpy_htod_async(self._device_in, self._host_in[:n], self._stream)
            if not self._context.execute_async_v3(self._stream.handle):
                raise RuntimeError("TensorRT execution failed")
            for name, device in self._device_out.items():
                cuda.memcpy_dtoh_async(self._host_out[name][:n], device, self._stream)
            self._stream.synchronize()
            return {name: np.array(host[:n], copy=True) for name, host in self._host_out.items()}
        finally:
            self._cuda_context.pop()

    def close(self) -> None:
        self._cuda_context.push()
        try:
            self._device_in.free()
            for device in self._device_out.values():
                device.free()
        finally:
            self._cuda_context.pop()
