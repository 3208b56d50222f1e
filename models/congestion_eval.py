"""`roadsense models evaluate`: score a deployed congestion model on labelled images.

The caller loads the model through the edge's own classifier backend (ONNX Runtime by
default; ``models/`` never imports the edge), so preprocessing is the card's, exactly as at
the roadside; images go in as read, in batches of the card's largest batch. Needs no torch.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from roadsense.core.errors import RoadSenseError
from roadsense.core.files import replace_file
from roadsense.models.card import card_path_for, load_card
from roadsense.models.image_sets import (
    ImageSet,
    classification_report,
    dataset_summary,
    evaluation_classes,
    load_images,
    reindex,
)
from roadsense.models.preprocess import Frame


class Classifier(Protocol):
    """What an evaluation needs of a loaded classifier (the edge's backends are ones)."""

    @property
    def labels(self) -> list[str]:
        """Class names in output order."""

    @property
    def max_batch(self) -> int:
        """The most frames one call takes."""

    def classify(self, frames: Sequence[Frame]) -> npt.NDArray[np.float32]:
        """Class probabilities, one row a frame."""


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
    classifier: Classifier, model: Path, images: Path, backend: str = "onnxruntime"
) -> dict[str, Any]:
    """Score ``classifier`` (``model`` loaded with ``backend``) on the class folders of
    ``images``."""
    data = load_images(images, evaluation_classes(images, classifier.labels))
    started = time.perf_counter()
    report = score(classifier, data)
    seconds = time.perf_counter() - started
    return {
        "model": str(model),
        "backend": backend,
        "images_folder": str(images),
        "seconds": round(seconds, 2),
        **report,
    }


RECORDED_BY = "roadsense models evaluate"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class RecordError(RoadSenseError):
    """An evaluation cannot be written into a model card."""


def record_evaluation(model: Path, name: str, report: dict[str, Any]) -> Path:
    """Write ``report`` into the card beside ``model`` as ``evaluation[name]``.

    Only the card changes (the ONNX and its sha256 stay as they are). Figures the
    training wrote are never overwritten; an earlier record of the same name is.
    """
    if not _NAME.match(name):
        raise RecordError(
            f"record name {name!r}: use lower-case letters, digits and '_' (e.g. unseen_camera)"
        )
    load_card(model)  # the card must belong to this model before anything is written
    card_path = card_path_for(model)
    document: dict[str, Any] = json.loads(card_path.read_text(encoding="utf-8"))
    evaluation: dict[str, Any] = document.setdefault("evaluation", {})
    earlier = evaluation.get(name)
    if earlier is not None and not (
        isinstance(earlier, dict) and earlier.get("recorded_by") == RECORDED_BY
    ):
        raise RecordError(
            f"{card_path}: evaluation {name!r} was written by the training; record under "
            "another name"
        )
    entry = {key: value for key, value in report.items() if key not in ("model", "seconds")}
    summary = dataset_summary(Path(report["images_folder"]))
    if "dataset" in summary:
        entry["dataset"] = summary["dataset"]
    entry["recorded_by"] = RECORDED_BY
    entry["recorded_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    evaluation[name] = entry
    replace_file(card_path, (json.dumps(document, indent=2) + "\n").encode())
    return card_path
