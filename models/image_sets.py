"""Labelled image folders and how a classifier scored on them (torch-free).

A labelled set is ``DIR/<label>/*.png|jpg``: what ``roadsense dataset congestion`` and
``roadsense dataset frames`` write, or a user's own set. A training set needs at least two
classes; a test set (a hold-out, another camera) may hold any of the model's classes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from roadsense.core.errors import RoadSenseError
from roadsense.models.congestion_labels import CONGESTION_LABELS
from roadsense.models.preprocess import Frame

LABELS = CONGESTION_LABELS
"""Default congestion classes, least to most congested."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MANIFEST = "dataset.json"
"""What a dataset builder writes beside the class folders: where the images came from."""


class DatasetError(RoadSenseError):
    """A labelled image folder cannot be used for training."""


@dataclass
class ImageSet:
    """Images resized to the input size (uint8 BGR), their class indices and files."""

    images: list[Frame]
    labels: npt.NDArray[np.int64]
    classes: list[str]
    files: list[Path]

    def counts(self) -> dict[str, int]:
        """Images per class."""
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


def class_names(root: Path) -> list[str]:
    """Class folders of ``root``: in the default level order when they are those levels."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder of class folders")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        raise DatasetError(f"{root}: needs at least two class folders, found {names}")
    if set(names) <= set(LABELS):
        return [label for label in LABELS if label in names]
    return names


def evaluation_classes(root: Path, known: Sequence[str]) -> list[str]:
    """Class folders of a test set: at least one, each one of the model's ``known`` classes."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder of class folders")
    names = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if not names:
        raise DatasetError(f"{root}: no class folders; expected some of {list(known)}")
    unknown = sorted(names - set(known))
    if unknown:
        raise DatasetError(
            f"{root}: class folders {unknown} are not among the model's classes {list(known)}"
        )
    return [name for name in known if name in names]


def load_images(
    root: Path, classes: list[str], width: int | None = None, height: int | None = None
) -> ImageSet:
    """Every image of the class folders, resized once to width x height when given (the
    edge resizes the same way), else as read."""
    images: list[Frame] = []
    labels: list[int] = []
    files: list[Path] = []
    for index, name in enumerate(classes):
        folder = root / name
        found = (
            sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if folder.is_dir()
            else []
        )
        for path in found:
            image = cv2.imread(str(path))
            if image is None:
                raise DatasetError(f"{path}: not an image OpenCV can read")
            if width is not None and height is not None:
                image = cv2.resize(image, (width, height))
            images.append(np.asarray(image, dtype=np.uint8))
            labels.append(index)
            files.append(path)
    if not images:
        raise DatasetError(f"{root}: no images in the class folders {classes}")
    return ImageSet(images, np.asarray(labels, dtype=np.int64), classes, files)


def classification_report(
    truth: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], classes: list[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 over the classes present, per-class F1 and the confusion matrix."""
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        confusion[t, p] += 1
    f1: dict[str, float] = {}
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        support = confusion[i].sum()
        if support == 0:
            continue  # a class absent from this split has no F1
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / support
        f1[name] = float(2 * precision * recall / (precision + recall)) if tp else 0.0
    return {
        "images": len(truth),
        "accuracy": round(float((truth == predicted).mean()), 4) if len(truth) else math.nan,
        "macro_f1": round(float(np.mean(list(f1.values()))), 4) if f1 else math.nan,
        "f1": {k_: round(v, 4) for k_, v in f1.items()},
        "confusion": {"rows_true_cols_predicted": classes, "matrix": confusion.tolist()},
    }


def reindex(images: ImageSet, classes: list[str]) -> ImageSet:
    """The same images with class indices into ``classes`` (which must hold theirs)."""
    unknown = sorted(set(images.classes) - set(classes))
    if unknown:
        raise DatasetError(
            f"classes {unknown} of the test images are not among the model's classes {classes}"
        )
    mapping = np.asarray([classes.index(c) for c in images.classes], dtype=np.int64)
    return ImageSet(images.images, mapping[images.labels], classes, images.files)


def dataset_summary(folder: Path) -> dict[str, Any]:
    """The folder, and the dataset.json a dataset builder left beside its images, if any."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return {"folder": str(folder)}
    try:
        loaded: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"folder": str(folder), "dataset_json": "unreadable"}
    return {"folder": str(folder), "dataset": loaded}
