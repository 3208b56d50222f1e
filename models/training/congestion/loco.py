"""Leave-one-camera-out evaluation of the frozen-backbone classifier.

For each camera in turn: the head's L2 penalty and the temperature are chosen by grouped
cross-validation over the *training* cameras only (k folds by camera), the head is fitted
on all views of every training camera's frames, and the held-out camera's frames (view 0,
as the edge sees them) are scored. The split is checked, not trusted: a fold whose training
rows include the held-out camera raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from roadsense.core.errors import RoadSenseError
from roadsense.models.loco_report import (
    camera_figures,
    camera_interval,
    camera_mean,
    pooled_figures,
    second_labeller_figures,
    selective_figures,
)
from roadsense.models.training.congestion.features import FeatureSet
from roadsense.models.training.congestion.head import (
    FAMILIES,
    Family,
    LinearHead,
    Weighting,
    adapt_head,
    fit_head,
    fit_temperature,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
"""progress(done, total, camera)."""


class LeakError(RoadSenseError):
    """A fold would train on the camera it tests."""


@dataclass(frozen=True)
class HeadSettings:
    """Model choices the inner cross-validation makes, and how."""

    l2_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    families: tuple[Family, ...] = FAMILIES
    inner_folds: int = 5
    views: int = 4
    weighting: Weighting = "camera-class"
    """``head.Weighting``; camera-class was chosen over class by the camera-grouped
    validation of the training cameras (models/artifacts/README.md)."""
    adapt_frames: int = 0
    """> 0: also fine-tune each fold's head on the held-out camera's first N frames (in
    clip order) and score its remaining frames before and after (``adapt_head``)."""


@dataclass(frozen=True)
class HeadChoice:
    """What the training cameras' validation chose."""

    family: Family
    l2: float
    temperature: float
    validation: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SecondLabels:
    """Frames a second labeller labelled, to score each fold's held-out camera on (never
    trained on): their features (view 0, labels = the second labeller's) and the first
    labeller's level of each (-1 where the first gave none)."""

    features: FeatureSet
    first: npt.NDArray[np.int64]
    file: str


def camera_folds(cameras: Sequence[str], folds: int) -> list[list[str]]:
    """Cameras dealt into ``folds`` groups, in sorted order (deterministic)."""
    unique = sorted(set(cameras))
    count = max(1, min(folds, len(unique)))
    return [unique[i::count] for i in range(count)]


def split(
    cameras: Sequence[str],
    held_out: Sequence[str],
    train_only: Sequence[bool] | npt.NDArray[np.bool_] | None = None,
) -> tuple[list[int], list[int]]:
    """(training rows, test rows) for held-out cameras; LeakError if they overlap. Rows
    marked ``train_only`` (composites) train with their camera and are never tested."""
    out = set(held_out)
    train = [i for i, c in enumerate(cameras) if c not in out]
    test = [
        i
        for i, c in enumerate(cameras)
        if c in out and not (train_only is not None and train_only[i])
    ]
    if {cameras[i] for i in train} & out:
        raise LeakError(f"training rows include a held-out camera of {sorted(out)}")
    return train, test


def _training_rows(data: FeatureSet, rows: Sequence[int], views: int) -> tuple[Any, Any]:
    x = data.features[list(rows), :views].reshape(-1, data.features.shape[2])
    y = np.repeat(data.labels[list(rows)], views)
    return x, y


def fit(
    data: FeatureSet,
    rows: Sequence[int],
    family: Family,
    l2: float,
    views: int,
    *,
    weighting: Weighting = HeadSettings.weighting,
) -> LinearHead:
    """The head fitted on every view of ``rows``."""
    x, y = _training_rows(data, rows, views)
    groups = (
        [data.cameras[i] for i in rows for _ in range(views)]
        if weighting == "camera-class"
        else None
    )
    return fit_head(x, y, len(data.classes), l2, family=family, groups=groups)


def softmax(logits: npt.NDArray[np.float32], temperature: float = 1.0) -> Any:
    """Row-wise softmax of logits / T."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def choose(data: FeatureSet, rows: Sequence[int], settings: HeadSettings) -> HeadChoice:
    """Head family and L2 by camera-mean accuracy (then gross error, then NLL) of
    out-of-fold predictions over the cameras of ``rows`` (grouped by camera), then the
    temperature fitted on those predictions."""
    cameras = [data.cameras[i] for i in rows]
    composite = data.composite_mask()[list(rows)]
    folds = camera_folds(cameras, settings.inner_folds)
    best: tuple[Family, float, tuple[float, float, float]] | None = None
    best_logits: npt.NDArray[np.float32] | None = None
    for family, l2 in [(f, l2) for f in settings.families for l2 in settings.l2_grid]:
        logits = np.zeros((len(rows), len(data.classes)), dtype=np.float32)
        for fold in folds:
            inner_train, inner_test = split(cameras, fold, composite)
            head = fit(
                data,
                [rows[i] for i in inner_train],
                family,
                l2,
                settings.views,
                weighting=settings.weighting,
            )
            logits[inner_test] = head.logits(data.features[[rows[i] for i in inner_test], 0])
        truth = data.labels[list(rows)]
        predicted = logits.argmax(axis=1)
        accuracy, gross = [], []
        for camera in sorted(set(cameras)):
            mine = np.asarray([c == camera for c in cameras]) & ~composite
            accuracy.append(float((predicted[mine] == truth[mine]).mean()))
            gross.append(float((np.abs(predicted[mine] - truth[mine]) >= 2).mean()))
        scored = np.flatnonzero(~composite)
        likelihood = softmax(logits[scored])[np.arange(len(scored)), truth[scored]]
        nll = float(-np.log(likelihood + 1e-12).mean())
        score = (float(np.mean(accuracy)), -float(np.mean(gross)), -nll)
        if best is None or score > best[2]:
            best, best_logits = (family, l2, score), logits[scored]
    assert best is not None
    assert best_logits is not None
    temperature = fit_temperature(best_logits, data.labels[list(rows)][~composite])
    return HeadChoice(
        best[0],
        best[1],
        temperature,
        {
            "camera_mean_accuracy": round(best[2][0], 4),
            "gross_error_rate": round(-best[2][1], 4),
            "nll": round(-best[2][2], 4),
        },
    )


def _adapt_gain(
    data: FeatureSet,
    test: list[int],
    head: LinearHead,
    temperature: float,
    settings: HeadSettings,
) -> dict[str, Any]:
    """Accuracy on a held-out camera's later frames before and after adapting the fold's
    head to its first ``adapt_frames`` frames (rows are in clip order)."""
    first, rest = test[: settings.adapt_frames], test[settings.adapt_frames :]
    if not rest:
        return {"frames_used": len(first), "frames_scored": 0}
    x, y = _training_rows(data, first, settings.views)
    adapted = adapt_head(head, x, y)
    truth = data.labels[rest]
    before = softmax(head.logits(data.features[rest, 0]), temperature).argmax(axis=1)
    after = softmax(adapted.logits(data.features[rest, 0]), temperature).argmax(axis=1)
    return {
        "frames_used": len(first),
        "frames_scored": len(rest),
        "accuracy_before": round(float((before == truth).mean()), 4),
        "accuracy_after": round(float((after == truth).mean()), 4),
    }


def leave_one_camera_out(
    data: FeatureSet,
    settings: HeadSettings,
    progress: Progress | None = None,
    second: SecondLabels | None = None,
) -> dict[str, Any]:
    """Per-camera figures, camera means, and per fold what was trained on and chosen (and,
    with ``second``, the held-out camera scored on a second labeller's frames too)."""
    started = time.perf_counter()
    cameras = sorted(set(data.cameras))
    per_camera: dict[str, dict[str, Any]] = {}
    per_camera_probabilities: dict[str, tuple[Any, Any]] = {}
    second_scored: dict[str, tuple[Any, Any, Any]] = {}
    for done, camera in enumerate(cameras):
        train, test = split(data.cameras, [camera], data.composite_mask())
        choice = choose(data, train, settings)
        head = fit(
            data, train, choice.family, choice.l2, settings.views, weighting=settings.weighting
        )
        probabilities = softmax(head.logits(data.features[test, 0]), choice.temperature)
        figures = camera_figures(data.labels[test], probabilities, data.classes)
        per_camera_probabilities[camera] = (data.labels[test], probabilities)
        figures["chosen"] = asdict(choice)
        if settings.adapt_frames:
            figures["adapt"] = _adapt_gain(data, test, head, choice.temperature, settings)
        figures["trained_on_cameras"] = sorted({data.cameras[i] for i in train})
        if second is not None:
            rows = [i for i, c in enumerate(second.features.cameras) if c == camera]
            if rows:
                logits = head.logits(second.features.features[rows, 0])
                second_scored[camera] = (
                    second.features.labels[rows],
                    second.first[rows],
                    softmax(logits, choice.temperature),
                )
        per_camera[camera] = figures
        logger.info("LOCO %s: accuracy %.3f", camera, figures["accuracy"])
        if progress:
            progress(done + 1, len(cameras), camera)
    report: dict[str, Any] = {
        "protocol": "leave-one-camera-out: every camera held out once; L2 and temperature "
        f"chosen by {settings.inner_folds}-fold camera-grouped validation of the training "
        "cameras only; scored on the held-out camera's frames as the edge sees them",
        "settings": asdict(settings),
        "per_camera": per_camera,
        "camera_mean": camera_mean(per_camera),
        "camera_mean_interval": camera_interval(per_camera),
        "pooled": pooled_figures(per_camera_probabilities, data.classes),
        "uncertain_floors": selective_figures(per_camera_probabilities),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if second is not None:
        report["second_labeller"] = {
            "labels_file": second.file,
            **second_labeller_figures(second_scored),
        }
    return report
