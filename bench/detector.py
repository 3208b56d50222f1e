"""`roadsense bench detector`: the vehicle detector beside the congestion CNN, same run.

Both through the edge's own backends (ONNX Runtime, CPU, spinning off), on real frames of
the shipped clip: images per second at batch 1 and 8 over at least ``min_s`` seconds
after a warm-up, whole calls as the edge makes them (the detector's letterbox and
decoding included, the classifier's preprocessing included). ``--sizes`` also benches
the detector made for other input sizes (the network is fully convolutional), to show what
a larger input costs. ``ratio_bN`` = detector / classifier images per second.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadsense.bench.edge import decode_all
from roadsense.bench.timing import images_per_second
from roadsense.edge.backends.classifier import create_classifier
from roadsense.edge.backends.detector import create_detector
from roadsense.models.card import card_path_for
from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR, SAMPLE_CLIP

BATCHES = (1, 8)


def _resized(model: Path, size: int, folder: Path) -> Path:
    """A copy of the detector whose card asks for ``size`` x ``size`` input."""
    copy = folder / f"detector-{size}.onnx"
    copy.write_bytes(model.read_bytes())
    card = json.loads(card_path_for(model).read_text(encoding="utf-8"))
    card["input"].update(width=size, height=size)
    card_path_for(copy).write_text(json.dumps(card), encoding="utf-8")
    return copy


def run_detector_bench(
    model: Path = DEFAULT_DETECTOR, sizes: Sequence[int] = (), min_s: float = 2.0
) -> dict[str, Any]:
    """Images per second of the detector (and of the classifier) by batch size."""
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
        size = shipped.card.input.width
        figures |= {"detector": shipped.version, "input": size}
        shipped.close()
        for each in (size, *(s for s in sizes if s != size)):
            path = model if each == size else _resized(model, each, Path(workdir))
            detector = create_detector("onnxruntime", path)
            suffix = "" if each == size else f"_{each}"
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
