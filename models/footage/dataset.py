"""An image-folder congestion dataset from one clip: auto-labelled frames plus composites.

``OUT/<label>/<name>.png`` with the same number of images per class, and
``OUT/dataset.json`` saying where every count came from. With a holdout fraction the
last part of the clip (in time) goes to ``OUT_holdout`` as real auto-labelled frames
only; nothing in it feeds the background, the crops or the training images.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from roadsense.core.errors import FootageError
from roadsense.models.card import sha256_file
from roadsense.models.footage.augment import augment
from roadsense.models.footage.autolabel import Autolabeller, FrameLabel, label_counts
from roadsense.models.footage.composite import Compositor, clean_background, extract_crops
from roadsense.models.footage.config import FootageConfig
from roadsense.models.footage.video import Frame, check_frame_size, read_frames
from roadsense.models.image_sets import MANIFEST

logger = logging.getLogger(__name__)

# Frames just before the holdout cut are near-duplicates of its first frames: skip 1 s.
HOLDOUT_GAP_FRAMES = 60


@dataclass
class DatasetSummary:
    """What a build wrote, as also recorded in ``dataset.json``."""

    out: Path
    counts: dict[str, int]
    real: dict[str, int]
    composite: dict[str, int]
    holdout_out: Path | None = None
    holdout_counts: dict[str, int] = field(default_factory=dict)
    holdout_indices: list[int] = field(default_factory=list)
    frame_labels: list[FrameLabel] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)


def holdout_path(out: Path) -> Path:
    """Where the holdout split of ``out`` goes: ``<out>_holdout`` beside it."""
    return out.with_name(out.name + "_holdout")


def fresh_folder(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FootageError(f"{path}: output folder exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)


def write_image(folder: Path, name: str, image: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(folder / name), image):
        raise FootageError(f"{folder / name}: cannot write image")


def _scan(video: Path, config: FootageConfig) -> tuple[int, list[FrameLabel], dict[int, Frame]]:
    """One pass: every frame feeds the labeller; every Nth is labelled and kept."""
    labeller = Autolabeller(config)
    every = config.dataset.sample_every
    labels: list[FrameLabel] = []
    kept: dict[int, Frame] = {}
    total = 0
    for index, frame in enumerate(read_frames(video)):
        if index == 0:
            check_frame_size(frame, config.roi, video)
        total += 1
        if index % every == 0:
            kept[index] = frame
        label = labeller.observe(frame, measure=index % every == 0)
        if label is not None:
            labels.append(label)
    return total, labels, kept


def build_dataset(
    video: Path,
    out: Path,
    config: FootageConfig,
    *,
    per_class: int = 200,
    holdout_fraction: float = 0.0,
    seed: int = 0,
    config_source: str = "",
) -> DatasetSummary:
    """Write the dataset (and its holdout split when ``holdout_fraction`` > 0)."""
    if per_class < 1:
        raise FootageError(f"--per-class must be at least 1, got {per_class}")
    if not 0.0 <= holdout_fraction < 1.0:
        raise FootageError(f"--holdout-fraction must be in [0, 1), got {holdout_fraction}")
    started = time.perf_counter()
    fresh_folder(out)
    holdout_out = holdout_path(out) if holdout_fraction > 0 else None
    if holdout_out is not None:
        fresh_folder(holdout_out)
    rng = np.random.default_rng(seed)
    names = config.labels

    total, labels, kept = _scan(video, config)
    cut = math.floor(total * (1.0 - holdout_fraction)) if holdout_out else total
    train_end = cut - HOLDOUT_GAP_FRAMES if holdout_out else cut
    train_labels = [lab for lab in labels if lab.index < train_end]
    holdout_labels = [lab for lab in labels if lab.index >= cut] if holdout_out else []
    train_frames = [(i, f) for i, f in kept.items() if i < train_end]
    if len(train_frames) < 3:
        raise FootageError(f"{video}: too few frames before the holdout cut ({len(train_frames)})")

    step = max(len(train_frames) // config.composite.background_frames, 1)
    background = clean_background([f for _, f in train_frames[::step]])
    crops = extract_crops(train_frames, background, config.roi, config.composite)
    compositor = Compositor(background, crops, config.composite)

    real: dict[str, int] = {}
    composite: dict[str, int] = {}
    min_composites = math.ceil(config.dataset.min_composite_fraction * per_class)
    for level, name in enumerate(names):
        candidates = [lab.index for lab in train_labels if lab.label == name]
        take = min(len(candidates), per_class - min_composites)
        chosen = sorted(rng.choice(candidates, size=take, replace=False)) if take else []
        for index in chosen:
            image = kept[int(index)]
            if config.dataset.augment_real:
                image, _ = augment(image, config.augment, rng)
            write_image(out / name, f"real_f{int(index):05d}.png", image)
        for number in range(per_class - take):
            scene = compositor.make(level, rng)
            lights = [(p.x, p.y, float(p.width)) for p in scene.placements]
            image, _ = augment(scene.image, config.augment, rng, lights)
            write_image(out / name, f"composite_{number:05d}.png", image)
        real[name], composite[name] = take, per_class - take

    for lab in holdout_labels:
        assert holdout_out is not None
        write_image(holdout_out / lab.label, f"real_f{lab.index:05d}.png", kept[lab.index])

    summary = DatasetSummary(
        out=out,
        counts={name: real[name] + composite[name] for name in names},
        real=real,
        composite=composite,
        holdout_out=holdout_out,
        holdout_counts=label_counts(holdout_labels, names),
        holdout_indices=[lab.index for lab in holdout_labels],
        frame_labels=labels,
    )
    summary.manifest = _manifest(
        summary,
        video=video,
        config=config,
        config_source=config_source,
        seed=seed,
        frames=total,
        cut=cut,
        train_end=train_end,
        crops=len(crops),
        seconds=time.perf_counter() - started,
    )
    text = json.dumps(summary.manifest, indent=2)
    (out / MANIFEST).write_text(text + "\n", encoding="utf-8")
    if holdout_out is not None:
        (holdout_out / MANIFEST).write_text(text + "\n", encoding="utf-8")
    logger.info("wrote %d images to %s", sum(summary.counts.values()), out)
    return summary


def _manifest(
    summary: DatasetSummary,
    *,
    video: Path,
    config: FootageConfig,
    config_source: str,
    seed: int,
    frames: int,
    cut: int,
    train_end: int,
    crops: int,
    seconds: float,
) -> dict[str, Any]:
    names = config.labels
    train_labels = [lab for lab in summary.frame_labels if lab.index < train_end]
    manifest: dict[str, Any] = {
        "labels": list(names),
        "counts": summary.counts,
        "real": summary.real,
        "composite": summary.composite,
        "video": {"file": video.name, "sha256": sha256_file(video), "frames": frames},
        "seed": seed,
        "config_source": config_source,
        "config": config.model_dump(mode="json"),
        "autolabel": {
            "sample_every": config.dataset.sample_every,
            "labelled_frames": len(summary.frame_labels),
            "label_distribution": label_counts(summary.frame_labels, names),
            "training_part_distribution": label_counts(train_labels, names),
        },
        "vehicle_crops": crops,
        "build_seconds": round(seconds, 2),
        "caveats": [
            "Labels of real frames are auto-labels from ROI occupancy and optical flow, "
            "not human labels.",
            "Composite labels come from the density of pasted vehicles "
            "(composite.density_bands), not from a person.",
            "All images, holdout included, come from one camera and one clip: the holdout "
            "measures generalisation over time on the same view, not to new cameras.",
        ],
    }
    if summary.holdout_out is not None:
        manifest["holdout"] = {
            "folder": summary.holdout_out.name,
            "first_frame": cut,
            "training_frames_before": train_end,
            "counts": summary.holdout_counts,
            "frame_indices": summary.holdout_indices,
            "note": "real auto-labelled frames only, un-augmented; never used for "
            "background, crops or training images",
        }
    return manifest
