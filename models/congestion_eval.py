"""`roadsense models evaluate`: score a deployed congestion model on labelled images.

The model runs through the edge's own classifier backend (ONNX Runtime by default), so
preprocessing is the card's, exactly as at the roadside; images go in as read, in batches
of the card's largest batch. Needs no torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from roadsense.edge.classifier import Classifier, create_classifier
from roadsense.models.image_sets import (
    ImageSet,
    classification_report,
    evaluation_classes,
    load_images,
    reindex,
)


def score(classifier: Classifier, images: ImageSet) -> dict[str, Any]:
    """Accuracy, macro-F1 and confusion of ``classifier`` on ``images``."""
    labels = classifier.labels
    scored = reindex(images, labels)
    predicted: list[np.ndarray] = []
    step = max(1, classifier.max_batch)
    for start in range(0, len(scored.images), step):
        probabilities = classifier.classify(scored.images[start : start + step])
        predicted.append(np.asarray(probabilities).argmax(axis=1))
    return classification_report(scored.labels, np.concatenate(predicted), labels)


def evaluate_model(
    model: Path,
    images: Path,
    backend: str = "onnxruntime",
    options: dict[str, object] | None = None,
) -> dict[str, Any]:
    """Load ``model`` with ``backend`` and score it on the class folders of ``images``."""
    classifier = create_classifier(backend, model, options)
    try:
        data = load_images(images, evaluation_classes(images, classifier.labels))
        started = time.perf_counter()
        report = score(classifier, data)
        seconds = time.perf_counter() - started
    finally:
        classifier.close()
    return {
        "model": str(model),
        "backend": backend,
        "images_folder": str(images),
        "seconds": round(seconds, 2),
        **report,
    }
