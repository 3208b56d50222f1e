"""Frozen EfficientNet-Lite0 features, computed once per frame and view.

The backbone is frozen (ImageNet weights, BatchNorm in eval mode); only the linear head on
its pooled features is trained (1280 of the last convolution, or with ``pooling =
"stages"`` 2024: those and the averages of the stage ends). So every frame goes through
the network once per view, and a leave-one-camera-out fold costs one small logistic
regression instead of a fine-tuning run. View 0 is the frame as the edge sees it; views
1.. are random ``camera_view`` augmentations (training only: scores use view 0).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from roadsense.models.card import InputSpec
from roadsense.models.footage.camera_augment import camera_view
from roadsense.models.footage.multicamera import LabelledFrame
from roadsense.models.preprocess import Frame, frames_to_tensor
from roadsense.models.training.congestion.efficientnet_lite import (
    EfficientNetLite0,
    Pooling,
    pooled,
)

logger = logging.getLogger(__name__)

LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
"""EfficientNet-Lite's TensorFlow preprocessing: (pixel - 127.5) / 127.5 (here on 0..1)."""


def lite_input_spec(width: int, height: int) -> InputSpec:
    """The card's input for the EfficientNet-Lite0 classifier."""
    return InputSpec(
        name="images",
        width=width,
        height=height,
        color_order="RGB",
        mean=LITE_MEAN,
        std=LITE_STD,
        resize="stretch",
        dtype="float32",
        layout="NCHW",
    )


@dataclass
class FeatureSet:
    """Pooled features of every frame and view, with what each frame is."""

    features: npt.NDArray[np.float32]  # frames x views x features (1280 or 2024)
    labels: npt.NDArray[np.int64]
    cameras: list[str]
    classes: list[str]
    seconds: float
    train_only: npt.NDArray[np.bool_] | None = None
    """Per frame: a composite (trains, never scored); None: no composites."""

    def composite_mask(self) -> npt.NDArray[np.bool_]:
        """Per frame: True for composites."""
        if self.train_only is None:
            return np.zeros(len(self.labels), dtype=bool)
        return self.train_only

    def save(self, path: Path) -> None:
        """Keep the features for another run (an ``.npz``)."""
        np.savez_compressed(
            path,
            features=self.features,
            labels=self.labels,
            cameras=np.asarray(self.cameras),
            classes=np.asarray(self.classes),
            seconds=np.asarray(self.seconds),
            train_only=self.composite_mask(),
        )

    @classmethod
    def load(cls, path: Path) -> FeatureSet:
        """Features saved by ``save``."""
        with np.load(path) as data:
            return cls(
                data["features"].astype(np.float32),
                data["labels"].astype(np.int64),
                [str(c) for c in data["cameras"]],
                [str(c) for c in data["classes"]],
                float(data["seconds"]),
                data["train_only"].astype(bool) if "train_only" in data else None,
            )


def pooled_features(
    backbone: EfficientNetLite0,
    images: Sequence[Frame],
    spec: InputSpec,
    batch: int = 32,
    pooling: Pooling = "last",
) -> npt.NDArray[np.float32]:
    """Global-average-pooled features (N x 1280, or N x 2024 for ``"stages"``)."""
    out = []
    backbone.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            tensor = torch.from_numpy(frames_to_tensor(images[start : start + batch], spec))
            out.append(pooled(backbone.feature_maps(tensor, pooling == "stages")).numpy())
    return np.concatenate(out).astype(np.float32)


def extract_features(
    backbone: EfficientNetLite0,
    frames: Sequence[LabelledFrame],
    classes: Sequence[str],
    spec: InputSpec,
    *,
    views: int = 4,
    seed: int = 0,
    pooling: Pooling = "last",
) -> FeatureSet:
    """Features of each frame as it is (view 0) and of ``views - 1`` augmented views."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    per_view = []
    for view in range(views):
        images = [f.image if view == 0 else camera_view(f.image, rng)[0] for f in frames]
        per_view.append(pooled_features(backbone, images, spec, pooling=pooling))
        logger.info("features of view %d/%d done", view + 1, views)
    features = np.stack(per_view, axis=1)
    labels = np.asarray([list(classes).index(f.label) for f in frames], dtype=np.int64)
    seconds = time.perf_counter() - started
    composite = np.asarray([f.composite for f in frames], dtype=bool)
    return FeatureSet(
        features, labels, [f.camera for f in frames], list(classes), seconds, composite
    )
