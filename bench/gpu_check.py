"""GPU check of the congestion CNN: run on an NVIDIA machine by ``bench/gpu_check.sh``.

1. ONNX Runtime on the CPU: reference probabilities on real frames of the
   shipped clip, and img/s by batch size.
2. ONNX Runtime with the CUDA provider, when it is installed: largest
   |probability difference| against the CPU, and img/s by batch size.
3. TensorRT, when ``tensorrt`` and ``pycuda`` import: an fp16 engine built
   through the edge's own cache (build time), loaded a second time from the
   cache (load time), largest |probability difference| against ONNX Runtime
   CPU, and img/s by batch size.
4. The vehicle detector (``--detector``): ONNX Runtime on the CPU as the
   reference, then its TensorRT fp16 engine the same way: build and cached
   load times, the share of the reference's boxes it finds at IoU 0.5 with the
   same class, the vehicles per frame it adds or misses, and img/s at 1 and 8.

Whatever is not installed is reported as skipped with the reason. Prints a
Markdown table, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from roadsense.models.calibration import apply_temperature
from roadsense.models.card import ModelCard, load_card
from roadsense.models.preprocess import Frame, frames_to_tensor
from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR, SAMPLE_CLIP

BATCHES = (1, 8, 32)


def _frames(count: int) -> list[Frame]:
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    frames: list[Frame] = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        frames.append(np.asarray(frame, dtype=np.uint8))
    capture.release()
    return frames


def _rate(run: Callable[[int], Any], batch: int, seconds: float) -> float:
    run(batch)
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or done == 0:
        run(batch)
        done += batch
    return round(done / elapsed, 1)


Outputs = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]
"""Calibrated probabilities (as every backend reports them) and the activation maps."""


def _relative(a: npt.NDArray[np.float32] | None, b: npt.NDArray[np.float32] | None) -> Any:
    if a is None or b is None:
        return "no activation map output"
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


def _onnxruntime(
    model: Path, card: ModelCard, frames: list[Frame], provider: str, seconds: float
) -> tuple[Outputs, dict[str, float]]:
    session = ort.InferenceSession(str(model), providers=[provider])
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"{provider} did not load (got {session.get_providers()})")
    tensor = frames_to_tensor(frames, card.input)

    def run(batch: int) -> npt.NDArray[np.float32]:
        (out,) = session.run([card.output_name], {card.input.name: tensor[:batch]})
        return np.asarray(out, dtype=np.float32)

    probabilities = apply_temperature(run(len(frames)), card.temperature)
    maps = None
    if card.cam_output_name:
        (raw,) = session.run([card.cam_output_name], {card.input.name: tensor})
        maps = np.asarray(raw, dtype=np.float32)
    rates = {f"b{b}": _rate(run, b, seconds) for b in BATCHES if b <= card.max_batch}
    return (probabilities, maps), rates


def _tensorrt(
    model: Path, card: ModelCard, frames: list[Frame], seconds: float, engines: Path
) -> tuple[Outputs, dict[str, Any]]:
    from roadsense.edge.backends.tensorrt import TensorRtClassifier

    options: dict[str, object] = {"precision": "fp16", "engine_dir": engines}
    started = time.perf_counter()
    first = TensorRtClassifier(model, card, options)
    build_s = time.perf_counter() - started
    first.close()
    started = time.perf_counter()
    classifier = TensorRtClassifier(model, card, options)
    load_s = time.perf_counter() - started
    batches = range(0, len(frames), card.max_batch)
    maps = None
    if card.cam_output_name:
        explained = [classifier.explain(frames[i : i + card.max_batch]) for i in batches]
        probabilities = np.concatenate([p for p, _ in explained])
        maps = np.concatenate([m for _, m in explained])
    else:
        probabilities = np.concatenate(
            [classifier.classify(frames[i : i + card.max_batch]) for i in batches]
        )
    rates = {
        f"b{b}": _rate(lambda n: classifier.classify(frames[:n]), b, seconds)
        for b in BATCHES
        if b <= card.max_batch
    }
    figures = {
        "engine": classifier.engine_path.name,
        "built_first": first.built,
        "cached_second": not classifier.built,
        "build_s": round(build_s, 1),
        "cached_load_s": round(load_s, 2),
        "img_s": rates,
    }
    classifier.close()
    return (probabilities, maps), figures


def _detector_checks(model: Path, frames: list[Frame], seconds: float) -> dict[str, Any]:
    """The detector on ONNX Runtime CPU (reference) and as a TensorRT fp16 engine."""
    import supervision as sv

    from roadsense.edge.backends.detector import create_detector
    from roadsense.models.detection.card import load_detector_card

    card = load_detector_card(model)
    # Compared at the card's score threshold (what a still counts): the weak boxes a
    # meter may keep by support are the least stable between fp16 and fp32.
    at_threshold: dict[str, object] = {"score_threshold": card.score_threshold}
    sample = frames[:8]
    cpu = create_detector("onnxruntime", model, at_threshold)
    reference = cpu.detect(sample)
    figures: dict[str, Any] = {
        "input": f"{cpu.card.input.width}x{cpu.card.input.height}",
        "reference_boxes": sum(len(d) for d in reference),
        "ort_cpu_img_s": {f"b{b}": _rate(lambda n: cpu.detect(frames[:n]), b, seconds)
                          for b in (1, 8)},
    }  # fmt: skip
    cpu.close()
    from roadsense.edge.backends.tensorrt import IMPORT_ERROR, TensorRtDetector

    if IMPORT_ERROR:
        figures["tensorrt"] = f"skipped: {IMPORT_ERROR}"
        return figures
    with tempfile.TemporaryDirectory(prefix="roadsense-engines-") as engines:
        options: dict[str, object] = {"precision": "fp16", "engine_dir": engines, **at_threshold}
        try:
            started = time.perf_counter()
            TensorRtDetector(model, card, options).close()
            build_s = time.perf_counter() - started
            started = time.perf_counter()
            engine = TensorRtDetector(model, card, options)
            load_s = time.perf_counter() - started
            found = engine.detect(sample)
            matched = 0
            for ours, theirs in zip(found, reference, strict=True):
                if len(ours) and len(theirs):
                    iou = sv.box_iou_batch(theirs.xyxy, ours.xyxy)
                    same = np.equal.outer(np.asarray(theirs.class_id), np.asarray(ours.class_id))
                    matched += int(((iou >= 0.5) & same).any(axis=1).sum())
            figures["tensorrt"] = {
                "build_s": round(build_s, 1),
                "cached_load_s": round(load_s, 2),
                "cached_second": not engine.built,
                "fp16_found_of_reference_boxes": round(
                    matched / max(figures["reference_boxes"], 1), 3
                ),
                "fp16_count_diff_per_frame": round(
                    sum(abs(len(a) - len(b)) for a, b in zip(found, reference, strict=True))
                    / len(sample),
                    2,
                ),
                "img_s": {f"b{b}": _rate(lambda n: engine.detect(frames[:n]), b, seconds)
                          for b in (1, 8)},
            }  # fmt: skip
            engine.close()
        except Exception as err:
            figures["tensorrt"] = f"failed: {err}"
    return figures


def _gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"nvidia-smi not usable: {err}"


def main(argv: list[str] | None = None) -> int:
    """Run every check this machine allows; print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_CNN, help="ONNX with card")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per figure")
    parser.add_argument(
        "--detector", type=Path, default=DEFAULT_DETECTOR, help="detector ONNX with card"
    )
    args = parser.parse_args(argv)
    card = load_card(args.model)
    frames = _frames(max(BATCHES))
    report: dict[str, Any] = {
        "gpu": _gpu_name(),
        "model": f"{card.name} {card.version}",
        "input": f"{card.input.width}x{card.input.height}",
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
    }
    (reference, reference_maps), cpu_rates = _onnxruntime(
        args.model, card, frames, "CPUExecutionProvider", args.seconds
    )
    report["ort_cpu_img_s"] = cpu_rates
    if "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            (cuda_probabilities, cuda_maps), cuda_rates = _onnxruntime(
                args.model, card, frames, "CUDAExecutionProvider", args.seconds
            )
            report["ort_cuda_img_s"] = cuda_rates
            report["ort_cuda_vs_cpu_max_abs_diff"] = float(
                np.abs(cuda_probabilities - reference).max()
            )
            report["ort_cuda_vs_cpu_map_relative_diff"] = _relative(cuda_maps, reference_maps)
        except Exception as err:
            report["ort_cuda"] = f"failed: {err}"
    else:
        report["ort_cuda"] = "skipped: onnxruntime has no CUDAExecutionProvider here"
    from roadsense.edge.backends.tensorrt import IMPORT_ERROR

    if IMPORT_ERROR:
        report["tensorrt"] = f"skipped: {IMPORT_ERROR}"
    else:
        with tempfile.TemporaryDirectory(prefix="roadsense-engines-") as engines:
            try:
                (trt_probabilities, trt_maps), trt = _tensorrt(
                    args.model, card, frames, args.seconds, Path(engines)
                )
                trt["fp16_vs_ort_cpu_max_abs_diff"] = float(
                    np.abs(trt_probabilities - reference).max()
                )
                trt["fp16_vs_ort_cpu_map_relative_diff"] = _relative(trt_maps, reference_maps)
                report["tensorrt"] = trt
            except Exception as err:
                report["tensorrt"] = f"failed: {err}"
    try:
        report["detector"] = _detector_checks(args.detector, frames, args.seconds)
    except Exception as err:
        report["detector"] = f"failed: {err}"
    print("| check | figure |")
    print("| --- | --- |")
    for key, value in report.items():
        print(f"| {key} | {value} |")
    print(json.dumps(report, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
