"""How far two labellers of the same set agree (torch-free).

A second label file in the ``labels.csv`` format (``file,first_frame,last_frame,label``,
with ``# labelled_by:`` and ``# method:`` comments) is compared with the set's own labels
on every frame that both label. Per camera: frames compared, the share labelled alike, the
share two or more levels apart; their camera means (every camera weighs the same, as in
the leave-one-camera-out figures, so a classifier's camera-mean accuracy can be read
against them); and over all compared frames Cohen's kappa, unweighted and linearly
weighted (the levels are ordered), with the confusion of the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from roadsense.core.errors import FootageError
from roadsense.models.footage.multicamera import (
    LabelledSet,
    LabelRange,
    label_comments,
    read_ranges,
)
from roadsense.models.loco_report import camera_mean


def frame_labels(ranges: Sequence[LabelRange]) -> dict[tuple[str, int], str]:
    """(clip file, frame) -> level, for every frame a range covers."""
    return {
        (item.file, frame): item.label
        for item in ranges
        for frame in range(item.first_frame, item.last_frame + 1)
    }


def cohen_kappa(
    first: npt.NDArray[np.int64], second: npt.NDArray[np.int64], classes: int, linear: bool
) -> float:
    """Cohen's kappa of two labellings of the same items (linear: disagreements weigh by
    how many levels apart they are)."""
    observed = np.zeros((classes, classes))
    np.add.at(observed, (first, second), 1.0)
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    levels = np.arange(classes)
    distance = np.abs(levels[:, None] - levels[None, :]).astype(np.float64)
    weight = distance / max(classes - 1, 1) if linear else (distance > 0).astype(np.float64)
    chance = float((weight * expected).sum())
    if chance == 0:
        return 1.0  # one level only, and both always gave it
    return round(1.0 - float((weight * observed).sum()) / chance, 4)


def agreement(
    data: LabelledSet, second: Sequence[LabelRange], classes: Sequence[str]
) -> dict[str, Any]:
    """The set's labels against ``second`` on every frame both label."""
    mine = frame_labels(data.ranges)
    theirs = frame_labels(second)
    shared = sorted(mine.keys() & theirs.keys())
    if not shared:
        raise FootageError("the two label files have no labelled frame in common")
    order = list(classes)
    first = np.asarray([order.index(mine[key]) for key in shared], dtype=np.int64)
    other = np.asarray([order.index(theirs[key]) for key in shared], dtype=np.int64)
    cameras = np.asarray([data.clips[file].camera for file, _ in shared])
    per_camera: dict[str, dict[str, Any]] = {}
    for camera in sorted(set(cameras)):
        here = cameras == camera
        a, b = first[here], other[here]
        per_camera[camera] = {
            "frames": int(here.sum()),
            "labels": sorted({order[i] for i in a}, key=order.index),
            "second_labels": sorted({order[i] for i in b}, key=order.index),
            "agreement": round(float((a == b).mean()), 4),
            "two_or_more_apart": round(float((np.abs(a - b) >= 2).mean()), 4),
        }
    confusion = np.zeros((len(order), len(order)), dtype=np.int64)
    np.add.at(confusion, (first, other), 1)
    return {
        "frames_compared": len(shared),
        "frames_only_first": len(mine) - len(shared),
        "frames_only_second": len(theirs) - len(shared),
        "per_camera": per_camera,
        "camera_mean": camera_mean(per_camera, ("agreement", "two_or_more_apart")),
        "pooled_agreement": round(float((first == other).mean()), 4),
        "cohen_kappa": cohen_kappa(first, other, len(order), linear=False),
        "cohen_kappa_linear": cohen_kappa(first, other, len(order), linear=True),
        "confusion": {
            "rows_first_cols_second": order,
            "matrix": confusion.tolist(),
        },
    }


def read_second_labels(
    path: Path, data: LabelledSet, classes: Sequence[str]
) -> tuple[list[LabelRange], dict[str, str]]:
    """A second label file for the clips of ``data``, checked as ``labels.csv`` is."""
    if not path.is_file():
        raise FootageError(f"{path}: no such label file")
    return read_ranges(path, data.clips, classes), label_comments(path)


def table(report: dict[str, Any]) -> list[str]:
    """Markdown: per camera, then the camera mean."""
    lines = [
        "| camera | frames compared | first | second | agreement | two or more apart |",
        "|---|---|---|---|---|---|",
    ]
    for camera, row in report["per_camera"].items():
        lines.append(
            f"| {camera} | {row['frames']} | {'/'.join(row['labels'])} | "
            f"{'/'.join(row['second_labels'])} | {row['agreement']:.3f} | "
            f"{row['two_or_more_apart']:.3f} |"
        )
    mean = report["camera_mean"]
    lines.append(
        f"| **camera mean** | {report['frames_compared']} | | | **{mean['agreement']:.3f}** | "
        f"**{mean['two_or_more_apart']:.3f}** |"
    )
    return lines
