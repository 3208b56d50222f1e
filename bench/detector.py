"""`roadsense bench detector`: the vehicle detector beside the congestion CNN, same run.

Both through the edge's own backends (ONNX Runtime, CPU, spinning off), on real frames of
the shipped clip: images per second at batch 1 and 8 over at least ``min_s`` seconds
after a warm-up, whole calls as the edge makes them (the detector's letterbox and
decoding included, the classifier's preprocessing included). ``--sizes`` also benches
the detector at other input sizes (the network is fully convolutional; square ``416`` or
width x height ``512x416``), to show what a larger input costs. ``ratio_bN`` = detector /
classifier images per second. The models take turns in rounds (``run_detector_bench``):
on a shared machine one long timing per model read the same detector at 35 and 43
images/s in two runs a minute apart.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from roadsense.bench.edge import decode_all
from roadsense.bench.timing import images_per_second
from roadsense.edge.backends.classifier import create_classifier
from roadsense.edge.backends.detector import create_detector
from roadsense.models.detection.card import with_input_size
from roadsense.models.preprocess import Frame
from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR, SAMPLE_CLIP

BATCHES = (1, 8)
ROUNDS = 5


def size_key(width: int, height: int) -> str:
    """How a bench figure names an input size: ``416`` when square, else ``512x416``."""
    return str(width) if width == height else f"{width}x{height}"


def run_detector_bench(
    model: Path = DEFAULT_DETECTOR,
    sizes: Sequence[tuple[int, int]] = (),
    min_s: float = 2.0,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Images per second of the detector (and of the classifier) by batch size; ``sizes``
    are further (width, height) inputs, their figures suffixed ``_416`` or ``_512x416``.

    Every model and batch is timed once per round, ``min_s / rounds`` seconds each, the
    models taking turns, so a slow spell of a shared machine weighs on every model alike;
    a figure is the median of its rounds."""
    frames = decode_all(SAMPLE_CLIP)[: max(BATCHES)]
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="roadsense-bench-")))
        classifier = create_classifier("onnxruntime", DEFAULT_CNN)
        stack.callback(classifier.close)
        shipped = create_detector("onnxruntime", model)
        stack.callback(shipped.close)
        size = (shipped.card.input.width, shipped.card.input.height)
        calls: dict[str, Callable[[list[Frame]], object]] = {
            "classifier": classifier.classify,
            "detector": shipped.detect,
        }
        for each in dict.fromkeys(s for s in sizes if s != size):
            detector = create_detector("onnxruntime", with_input_size(model, *each, workdir))
            stack.callback(detector.close)
            calls[f"detector_{size_key(*each)}"] = detector.detect
        samples: dict[str, list[float]] = collections.defaultdict(list)
        for _ in range(rounds):
            for name, call in calls.items():
                for batch in BATCHES:
                    samples[f"{name}_img_s_b{batch}"].append(
                        images_per_second(
                            functools.partial(call, frames[:batch]), batch, min_s / rounds
                        )
                    )
        figures: dict[str, Any] = {
            "classifier": classifier.card.version,
            "detector": shipped.version,
            "input": size_key(*size),
            "rounds": rounds,
        }
    figures |= {key: round(statistics.median(rates), 1) for key, rates in samples.items()}
    for batch in BATCHES:
        figures[f"ratio_b{batch}"] = round(
            figures[f"detector_img_s_b{batch}"] / figures[f"classifier_img_s_b{batch}"], 2
        )
    return figures
