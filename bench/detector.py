"""`roadsense bench detector`: the vehicle detector beside the congestion CNN, same run.

Both through the edge's own backends (ONNX Runtime, CPU, spinning off), on real frames of
the shipped clip: images per second at batch 1 and 8 over at least ``min_s`` seconds
after a warm-up, whole calls as the edge makes them (the detector's letterbox and
decoding included, the classifier's preprocessing included). ``--sizes`` also benches
the detector at other input sizes (the network is fully convolutional; square ``416`` or
width x height ``512x416``), to show what a larger input costs. ``ratio_bN`` = detector /
classifier images per second.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadsense.bench.edge import decode_all
from roadsense.bench.timing import images_per_second
from roadsense.edge.backends.classifier import create_classifier
from roadsense.edge.backends.detector import create_detector
from roadsense.models.detection.card import with_input_size
from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR, SAMPLE_CLIP

BATCHES = (1, 8)


def size_key(width: int, height: int) -> str:
    """How a bench figure names an input size: ``416`` when square, else ``512x416``."""
    return str(width) if width == height else f"{width}x{height}"


def run_detector_bench(
    model: Path = DEFAULT_DETECTOR, sizes: Sequence[tuple[int, int]] = (), min_s: float = 2.0
) -> dict[str, Any]:
    """Images per second of the detector (and of the classifier) by batch size; ``sizes``
    are further (width, height) inputs, their figures suffixed ``_416`` or ``_512x416``."""
    frames = decode_all(SAMPLE_CLIP)[: max(BATCHES)]
    classifier = create_classifier("onnxruntime", DEFAULT_CNN)
    figures: dict[str, Any] = {"classifier": classifier.card.version}
    for batch in BATCHES:
        figures[f"classifier_img_s_b{batch}"] = round(
            images_per_second(functools.partial(classifier.classify, frames[:batch]), batch, min_s),
            1,
        )
    classifier.close()
    with tempfile.TemporaryDirectory(prefix="roadsense-bench-") as workdir:
        shipped = create_detector("onnxruntime", model)
        size = (shipped.card.input.width, shipped.card.input.height)
        figures |= {"detector": shipped.version, "input": size_key(*size)}
        shipped.close()
        for each in (size, *(s for s in sizes if s != size)):
            path = model if each == size else with_input_size(model, *each, Path(workdir))
            detector = create_detector("onnxruntime", path)
            suffix = "" if each == size else f"_{size_key(*each)}"
            for batch in BATCHES:
                rate = images_per_second(
                    functools.partial(detector.detect, frames[:batch]), batch, min_s
                )
                figures[f"detector{suffix}_img_s_b{batch}"] = round(rate, 1)
            detector.close()
    for batch in BATCHES:
        figures[f"ratio_b{batch}"] = round(
            figures[f"detector_img_s_b{batch}"] / figures[f"classifier_img_s_b{batch}"], 2
        )
    return figures
