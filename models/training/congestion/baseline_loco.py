"""The from-scratch baseline (MobileNetV3-Small, ``train``) under camera folds.

Fine-tuning a whole network per fold is what the frozen backbone avoids, so the baseline
uses k folds by camera (k >= 5) rather than one fold per camera: each fold's cameras are
held out together, and the network is trained (early stopping on a validation slice of
the training cameras' frames) on the others. Its probabilities are reported uncalibrated
(temperature 1): ``train_cnn`` fits no temperature.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import cv2
import numpy as np

from roadsense.models.footage.multicamera import LabelledFrame
from roadsense.models.image_sets import ImageSet
from roadsense.models.loco_report import camera_figures, camera_interval, camera_mean
from roadsense.models.training.congestion.loco import Progress, camera_folds, split
from roadsense.models.training.congestion.train import CnnSettings, predict, train_cnn

logger = logging.getLogger(__name__)


def _image_set(
    frames: Sequence[LabelledFrame], classes: list[str], size: tuple[int, int]
) -> ImageSet:
    images = [np.asarray(cv2.resize(f.image, size), dtype=np.uint8) for f in frames]
    labels = np.asarray([classes.index(f.label) for f in frames], dtype=np.int64)
    return ImageSet(images, labels, classes, [])


def baseline_camera_folds(
    frames: Sequence[LabelledFrame],
    classes: list[str],
    settings: CnnSettings,
    folds: int = 5,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Per-camera figures of MobileNetV3-Small trained from scratch, k folds by camera."""
    started = time.perf_counter()
    cameras = [f.camera for f in frames]
    size = (settings.width, settings.height)
    per_camera: dict[str, dict[str, Any]] = {}
    groups = camera_folds(cameras, folds)
    for done, held_out in enumerate(groups):
        train, test = split(cameras, held_out)
        model = train_cnn(_image_set([frames[i] for i in train], classes, size), settings)
        scored = _image_set([frames[i] for i in test], classes, size)
        probabilities = predict(model.network, scored.images, model.input_spec)
        for camera in held_out:
            mine = [i for i, index in enumerate(test) if cameras[index] == camera]
            figures = camera_figures(scored.labels[mine], probabilities[mine], classes)
            figures["fold"] = done
            per_camera[camera] = figures
        logger.info("baseline fold %d/%d done", done + 1, len(groups))
        if progress:
            progress(done + 1, len(groups), ",".join(held_out))
    ordered = {camera: per_camera[camera] for camera in sorted(per_camera)}
    return {
        "protocol": f"{len(groups)} folds by camera (each fold's cameras held out together); "
        "early stopping on a stratified slice of the training cameras' frames; temperature 1",
        "folds": groups,
        "settings": asdict(settings),
        "per_camera": ordered,
        "camera_mean": camera_mean(ordered),
        "camera_mean_interval": camera_interval(ordered),
        "seconds": round(time.perf_counter() - started, 1),
    }
