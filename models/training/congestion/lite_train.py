"""`roadsense train congestion --data SET`: the EfficientNet-Lite0 classifier on a labelled
multi-camera set, and `roadsense models evaluate-loco`.

What is frozen: the whole backbone (ImageNet weights, BatchNorm statistics included).
What is trained: the linear head on pooled features (family and L2 chosen by camera-
grouped validation), then its temperature on the same out-of-fold predictions. The
leave-one-camera-out evaluation repeats those choices inside every fold.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roadsense.models.congestion_labels import CONGESTION_LABELS
from roadsense.models.footage.agreement import frame_labels, read_second_labels
from roadsense.models.footage.multicamera import (
    Composite,
    LabelledFrame,
    LabelledSet,
    composite_frames,
    labelled_frames,
    read_labelled_set,
)
from roadsense.models.loco_report import table
from roadsense.models.training.congestion.baseline_loco import baseline_camera_folds
from roadsense.models.training.congestion.efficientnet_lite import (
    POOLED_CHANNELS,
    Pooling,
    pretrained_lite0,
)
from roadsense.models.training.congestion.export_lite import export_lite
from roadsense.models.training.congestion.features import (
    FeatureSet,
    extract_features,
    lite_input_spec,
)
from roadsense.models.training.congestion.head import Weighting
from roadsense.models.training.congestion.loco import (
    HeadSettings,
    Progress,
    SecondLabels,
    choose,
    fit,
    leave_one_camera_out,
)
from roadsense.models.training.congestion.train import CnnSettings

logger = logging.getLogger(__name__)

EVERY_FRAME = 1 << 30
"""A ``per_clip`` that takes every labelled frame (``labelled_frames``)."""


@dataclass(frozen=True)
class LiteSettings:
    """Input size, sampling and views of the Lite0 classifier."""

    width: int = 224
    height: int = 160
    per_clip: int = 48
    views: int = 4
    seed: int = 0
    threads: int = 2
    composite_copies: int = 0
    """Rows per composite (``composites.csv``), each with its own augmented views; 0: none
    (the shipped recipe: composites lowered the camera-grouped validation)."""
    pooling: Pooling = "stages"
    """What the head reads (``efficientnet_lite.Pooling``); "stages" was chosen by the
    camera-grouped validation of the training cameras (models/artifacts/README.md)."""
    weighting: Weighting = HeadSettings.weighting
    """How the head's fit weighs frames (``head.Weighting``)."""

    def head(self, adapt_frames: int = 0) -> HeadSettings:
        """The head's settings for these views and weighting."""
        return HeadSettings(views=self.views, weighting=self.weighting, adapt_frames=adapt_frames)


def _used_composites(data: LabelledSet, settings: LiteSettings) -> list[Composite]:
    """The set's composites when the settings train on them, else none."""
    return data.composites if settings.composite_copies else []


def _frames(data: LabelledSet, settings: LiteSettings) -> list[LabelledFrame]:
    """The set's labelled frames, then its composites (training only)."""
    frames = labelled_frames(data, per_clip=settings.per_clip)
    if settings.composite_copies:
        frames += composite_frames(data, settings.composite_copies)
    return frames


def _features(
    frames: list[LabelledFrame], settings: LiteSettings, cache: Path | None
) -> FeatureSet:
    if cache is not None and cache.is_file():
        loaded = FeatureSet.load(cache)
        width = sum(POOLED_CHANNELS[settings.pooling])
        if loaded.features.shape[:3] == (len(frames), settings.views, width):
            logger.info("features from %s", cache)
            return loaded
        logger.info("%s is for another set or view count; computing again", cache)
    spec = lite_input_spec(settings.width, settings.height)
    data = extract_features(
        pretrained_lite0(),
        frames,
        list(CONGESTION_LABELS),
        spec,
        views=settings.views,
        seed=settings.seed,
        pooling=settings.pooling,
    )
    if cache is not None:
        data.save(cache)
    return data


def evaluate_loco(
    root: Path,
    settings: LiteSettings,
    *,
    baseline: bool = False,
    baseline_folds: int = 5,
    adapt_frames: int = 0,
    cache: Path | None = None,
    progress: Progress | None = None,
    second_labels: Path | None = None,
) -> dict[str, Any]:
    """Leave-one-camera-out figures of the Lite0 classifier (and of the from-scratch
    MobileNetV3 baseline under ``baseline_folds`` camera folds, when asked; and each
    held-out camera scored on a second labeller's frames, when given)."""
    torch.set_num_threads(settings.threads)
    data = read_labelled_set(root)
    second = _second_labels(data, second_labels, settings) if second_labels else None
    frames = _frames(data, settings)
    features = _features(frames, settings, cache)
    real = [f for f in frames if not f.composite]
    report: dict[str, Any] = {
        "set": str(root),
        "frames": len(real),
        "composites": len(_used_composites(data, settings)),
        "cameras": len(data.cameras),
        "feature_seconds": round(features.seconds, 1),
        "settings": asdict(settings),
        "efficientnet_lite0": leave_one_camera_out(
            features, settings.head(adapt_frames), progress, second
        ),
    }
    if adapt_frames:
        report["adapt"] = adapt_summary(report["efficientnet_lite0"]["per_camera"])
    if baseline:
        report["mobilenetv3_from_scratch"] = baseline_camera_folds(
            real, list(CONGESTION_LABELS), CnnSettings(epochs=8, patience=3), baseline_folds
        )
    return report


def _second_labels(data: LabelledSet, path: Path, settings: LiteSettings) -> SecondLabels:
    """Every frame a second label file labels, as the edge sees it (view 0), with the
    first labeller's level of each (-1 where ``labels.csv`` gives none)."""
    ranges, _ = read_second_labels(path, data, CONGESTION_LABELS)
    frames = labelled_frames(replace(data, ranges=ranges), per_clip=EVERY_FRAME)
    features = extract_features(
        pretrained_lite0(),
        frames,
        list(CONGESTION_LABELS),
        lite_input_spec(settings.width, settings.height),
        views=1,
        pooling=settings.pooling,
    )
    first = frame_labels(data.ranges)
    levels = list(CONGESTION_LABELS)
    first_levels = [
        levels.index(first[key]) if key in first else -1
        for key in ((f.file, f.index) for f in frames)
    ]
    return SecondLabels(features, np.asarray(first_levels, dtype=np.int64), str(path))


def adapt_summary(per_camera: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Camera means of accuracy on later frames before and after adapting."""
    rows = [c["adapt"] for c in per_camera.values() if c.get("adapt", {}).get("frames_scored")]
    if not rows:
        return {"cameras": 0}
    before = float(np.mean([r["accuracy_before"] for r in rows]))
    after = float(np.mean([r["accuracy_after"] for r in rows]))
    return {
        "cameras": len(rows),
        "frames_used": rows[0]["frames_used"],
        "camera_mean_accuracy_before": round(before, 4),
        "camera_mean_accuracy_after": round(after, 4),
    }


def train_lite(
    root: Path,
    out: Path,
    settings: LiteSettings,
    *,
    name: str,
    version: str,
    loco: dict[str, Any] | None = None,
    cache: Path | None = None,
) -> Path:
    """Fit the head on every camera of ``root`` and export ONNX + card (with the LOCO
    figures of ``loco`` when given)."""
    torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    data = read_labelled_set(root)
    frames = _frames(data, settings)
    features = _features(frames, settings, cache)
    real = [f for f in frames if not f.composite]
    rows = list(range(len(frames)))
    head_settings = settings.head()
    choice = choose(features, rows, head_settings)
    head = fit(
        features, rows, choice.family, choice.l2, settings.views, weighting=settings.weighting
    )
    evaluation: dict[str, Any] = {"validation": {"camera_grouped": asdict(choice)}}
    if loco is not None:
        evaluation["leave_one_camera_out"] = loco
        lite = loco.get("efficientnet_lite0")
        if lite:
            evaluation["loco_table"] = table(
                lite["per_camera"], lite["camera_mean"], lite.get("camera_mean_interval")
            )
    scored = ~features.composite_mask()
    counts = {c: int((features.labels[scored] == i).sum()) for i, c in enumerate(features.classes)}
    used = _used_composites(data, settings)
    composites = f" and {len(used)} checked median composites" if used else ""
    description = (
        "Congestion classifier: EfficientNet-Lite0 with ImageNet weights, frozen; a "
        f"{choice.family} linear head trained on {len(real)} hand-labelled frames of "
        f"{len(data.cameras)} cameras{composites} "
        "(each cropped to its region of interest, "
        f"{settings.views - 1} augmented views each); temperature {choice.temperature:.3f} "
        "fitted on camera-grouped validation. Its leave-one-camera-out figures are in "
        "evaluation."
    )
    reference = [f.image for f in real[:: max(1, len(real) // 16)]]
    path = export_lite(
        pretrained_lite0(),
        head,
        lite_input_spec(settings.width, settings.height),
        out,
        name=name,
        version=version,
        classes=features.classes,
        temperature=choice.temperature,
        description=description,
        reference_images=reference,
        settings={**asdict(settings), **asdict(head_settings), "frozen": "whole backbone"},
        pooling=settings.pooling,
        training_data={
            "set": str(root),
            "labels": data.comments,
            "frames": len(real),
            "per_class": counts,
            "composites": [{"file": c.file, "method": c.method, "label": c.label} for c in used],
            "cameras": sorted(data.cameras),
            "training_seconds": round(time.perf_counter() - started, 1),
        },
        evaluation=evaluation,
    )
    return path
