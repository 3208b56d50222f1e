"""Leave-one-camera-out figures (torch-free): per camera and the camera mean.

For each held-out camera: accuracy, gross error rate (frames two or more levels from the
label), macro-F1 over the classes present in that camera's labels, the confusion matrix and
the expected calibration error of the (calibrated) probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from roadsense.models.calibration import expected_calibration_error, gross_error_rate
from roadsense.models.image_sets import classification_report

FIGURES = ("accuracy", "gross_error_rate", "macro_f1", "ece")

SECOND_LABELLER_FIGURES = (
    "accuracy",
    "gross_error_rate",
    "consensus_accuracy",
    "consensus_gross_error_rate",
)

UNCERTAIN_FLOORS = (0.35, 0.45, 0.55)
"""Floors of the top calibrated probability scored by ``selective_figures`` (the edge's
``[classifier] uncertain_below``; 0.35 is the sample configuration's)."""


def camera_figures(
    truth: npt.NDArray[np.int64],
    probabilities: npt.NDArray[np.floating[Any]],
    classes: Sequence[str],
) -> dict[str, Any]:
    """The figures of one held-out camera."""
    predicted = probabilities.argmax(axis=1).astype(np.int64)
    report = classification_report(truth, predicted, list(classes))
    return {
        "frames": len(truth),
        "labels": sorted({classes[i] for i in truth}, key=list(classes).index),
        "accuracy": report["accuracy"],
        "gross_error_rate": round(gross_error_rate(truth, predicted), 4),
        "macro_f1": report["macro_f1"],
        "ece": round(expected_calibration_error(probabilities, truth), 4),
        "confusion": report["confusion"]["matrix"],
    }


def camera_mean(
    per_camera: dict[str, dict[str, Any]], figures: Sequence[str] = FIGURES
) -> dict[str, float]:
    """Each figure averaged over cameras (every camera weighs the same; a camera without
    the figure, NaN, is left out of its mean)."""
    means: dict[str, float] = {}
    for name in figures:
        values = _present(per_camera, name)
        means[name] = round(float(np.mean(values)), 4) if values else math.nan
    return means


def _present(per_camera: dict[str, dict[str, Any]], name: str) -> list[float]:
    """The cameras' values of one figure, NaN (a camera without it) left out."""
    return [float(c[name]) for c in per_camera.values() if not math.isnan(float(c[name]))]


INTERVAL_RESAMPLES = 2000
"""Resamples of the cameras behind ``camera_interval``."""


def camera_interval(
    per_camera: dict[str, dict[str, Any]],
    resamples: int = INTERVAL_RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float]]:
    """A 95 % interval of each camera mean: percentile bootstrap over the cameras (drawn
    with replacement, as many as there are). It says how far the mean could move with
    another draw of cameras like these; with about twenty cameras that is wide."""
    rng = np.random.default_rng(seed)
    intervals: dict[str, list[float]] = {}
    for name in FIGURES:
        values = np.asarray(_present(per_camera, name))
        if len(values) == 0:
            intervals[name] = [math.nan, math.nan]
            continue
        draws = rng.integers(0, len(values), size=(resamples, len(values)))
        means = values[draws].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        intervals[name] = [round(float(low), 4), round(float(high), 4)]
    return intervals


def pooled_figures(
    scored: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.floating[Any]]]],
    classes: Sequence[str],
) -> dict[str, Any]:
    """The figures over every held-out frame together (each frame weighs the same)."""
    truth = np.concatenate([t for t, _ in scored.values()])
    probabilities = np.concatenate([p for _, p in scored.values()])
    figures = camera_figures(truth, probabilities, classes)
    figures.pop("labels")
    return figures


def selective_figures(
    scored: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.floating[Any]]]],
    floors: Sequence[float] = UNCERTAIN_FLOORS,
) -> list[dict[str, float]]:
    """Per floor, what the edge's uncertain rule does to held-out frames, camera-mean: the
    share reported with a level (top probability >= floor), and the accuracy and gross
    error of those frames (a camera with none reported is left out of those two means),
    and the share of wrong frames that the floor turned into uncertain ones."""
    rows = []
    for floor in floors:
        reported, accuracy, gross, caught = [], [], [], []
        for truth, probabilities in scored.values():
            predicted = probabilities.argmax(axis=1)
            kept = probabilities.max(axis=1) >= floor
            wrong = predicted != truth
            reported.append(float(kept.mean()))
            if kept.any():
                accuracy.append(float((predicted[kept] == truth[kept]).mean()))
                gross.append(gross_error_rate(truth[kept], predicted[kept]))
            if wrong.any():
                caught.append(float((~kept[wrong]).mean()))
        rows.append(
            {
                "floor": floor,
                "reported": round(float(np.mean(reported)), 4),
                "accuracy_reported": round(float(np.mean(accuracy)), 4) if accuracy else math.nan,
                "gross_error_reported": round(float(np.mean(gross)), 4) if gross else math.nan,
                "wrong_made_uncertain": round(float(np.mean(caught)), 4) if caught else math.nan,
            }
        )
    return rows


def second_labeller_figures(
    scored: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[Any]]],
) -> dict[str, Any]:
    """Held-out predictions on the frames a second labeller labelled: per camera and as
    camera means, accuracy and gross error against the second labels, and the same on the
    frames where both labellers gave one level (``first`` is -1 where the first gave none).
    A camera with no such frame is left out of the consensus means."""
    per_camera: dict[str, dict[str, Any]] = {}
    for camera, (second, first, probabilities) in scored.items():
        predicted = probabilities.argmax(axis=1).astype(np.int64)
        both = first == second
        per_camera[camera] = {
            "frames": len(second),
            "accuracy": round(float((predicted == second).mean()), 4),
            "gross_error_rate": round(gross_error_rate(second, predicted), 4),
            "consensus_frames": int(both.sum()),
            "consensus_accuracy": round(float((predicted[both] == second[both]).mean()), 4)
            if both.any()
            else math.nan,
            "consensus_gross_error_rate": round(gross_error_rate(second[both], predicted[both]), 4)
            if both.any()
            else math.nan,
        }
    means = camera_mean(per_camera, SECOND_LABELLER_FIGURES)
    means["consensus_cameras"] = sum(1 for c in per_camera.values() if c["consensus_frames"])
    return {"per_camera": per_camera, "camera_mean": means}


def table(
    per_camera: dict[str, dict[str, Any]],
    means: dict[str, float],
    interval: dict[str, list[float]] | None = None,
) -> list[str]:
    """A markdown table of the per-camera figures and the camera mean (and its 95 %
    interval over cameras, when given)."""
    lines = [
        "| camera | frames | labels | accuracy | gross error | macro-F1 | ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    for camera, row in per_camera.items():
        lines.append(
            f"| {camera} | {row['frames']} | {'/'.join(row['labels'])} | {row['accuracy']:.3f} "
            f"| {row['gross_error_rate']:.3f} | {row['macro_f1']:.3f} | {row['ece']:.3f} |"
        )
    lines.append(
        f"| **camera mean** | | | **{means['accuracy']:.3f}** | "
        f"**{means['gross_error_rate']:.3f}** | **{means['macro_f1']:.3f}** | "
        f"**{means['ece']:.3f}** |"
    )
    if interval:
        cells = " | ".join(f"{low:.2f}-{high:.2f}" for low, high in (interval[f] for f in FIGURES))
        lines.append(f"| 95 % interval over cameras | | | {cells} |")
    return lines
