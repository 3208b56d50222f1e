"""The self-test a new model passes before it replaces the running one.

Both models run on the same recent camera frames (as the running model saw them: cropped
to the region for a classifier, whole for a detector), in turns, so they are timed under
the same load. The new model's output must be sound on every frame: for a classifier
finite probabilities within 0..1 that sum to 1, for a detector finite boxes inside the
frame with scores within 0..1. Its p95 latency per call must stay within
``latency_factor`` times the running model's (unless it is a model that ran on the
device before: a rollback is not held to the budget of the model it replaces). Loading
(and its checks of the input shape against the card) happened before: a model that does
not load never gets here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import supervision as sv

from roadsense.core.errors import ModelUpdateError
from roadsense.models.preprocess import Frame
from roadsense.proto.refusals import Refusal

SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SelfTestResult:
    """What the self-test measured."""

    frames: int
    calls: int
    running_p95_ms: float
    candidate_p95_ms: float

    def as_json(self) -> dict[str, float | int]:
        """For the reply's settings_json."""
        return {
            "frames": self.frames,
            "calls": self.calls,
            "running_p95_ms": round(self.running_p95_ms, 3),
            "candidate_p95_ms": round(self.candidate_p95_ms, 3),
        }


class TestedModel(Protocol):
    """What the self-test needs of a model: its card's version and its largest batch."""

    @property
    def max_batch(self) -> int:
        """Frames per call at most."""

    @property
    def version(self) -> str:
        """The model's version (its card's)."""


Run = Callable[[Any, Sequence[Frame]], Any]
"""Runs a model on a batch of frames; its output goes to a ``Check``."""
Check = Callable[[str, Any, Sequence[Frame]], None]
"""Refuses (ModelUpdateError 'self_test') output that is not sound for these frames."""


def _batches(model: TestedModel, frames: Sequence[Frame]) -> list[Sequence[Frame]]:
    step = model.max_batch
    return [frames[i : i + step] for i in range(0, len(frames), step)]


def _timed(run: Run, model: TestedModel, batch: Sequence[Frame]) -> tuple[float, Any]:
    began = time.perf_counter()
    output = run(model, batch)
    return (time.perf_counter() - began) * 1000, output


def classify(model: Any, batch: Sequence[Frame]) -> np.ndarray:
    """A classifier's calibrated probabilities for the batch."""
    return np.asarray(model.classify(batch))


def detect(model: Any, batch: Sequence[Frame]) -> list[sv.Detections]:
    """A detector's vehicles in each frame of the batch."""
    return list(model.detect(batch))


def check_probabilities(version: str, probabilities: np.ndarray, batch: Sequence[Frame]) -> None:
    """Refuse output that is not one probability distribution per frame."""
    frames = len(batch)
    if probabilities.ndim != 2 or probabilities.shape[0] != frames:
        raise ModelUpdateError(
            Refusal.SELF_TEST,
            f"model {version}: output shape {probabilities.shape} for {frames} frames",
        )
    if not np.isfinite(probabilities).all():
        raise ModelUpdateError(
            Refusal.SELF_TEST, f"model {version}: probabilities are not finite (NaN or infinite)"
        )
    if (probabilities < -SUM_TOLERANCE).any() or (probabilities > 1 + SUM_TOLERANCE).any():
        raise ModelUpdateError(Refusal.SELF_TEST, f"model {version}: probabilities outside 0..1")
    sums = probabilities.sum(axis=1)
    worst = float(np.abs(sums - 1.0).max())
    if worst > SUM_TOLERANCE:
        raise ModelUpdateError(
            Refusal.SELF_TEST, f"model {version}: probabilities sum to {1 + worst:.4f}, not 1"
        )


def check_detections(version: str, found: list[sv.Detections], batch: Sequence[Frame]) -> None:
    """Refuse output that is not one set of sound boxes per frame: finite, inside the frame
    (a pixel of slack), scores within 0..1."""
    if len(found) != len(batch):
        raise ModelUpdateError(
            Refusal.SELF_TEST, f"model {version}: {len(found)} results for {len(batch)} frames"
        )
    for detections, frame in zip(found, batch, strict=True):
        height, width = frame.shape[:2]
        boxes = np.asarray(detections.xyxy, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(
            detections.confidence if detections.confidence is not None else [], np.float64
        )
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            raise ModelUpdateError(
                Refusal.SELF_TEST, f"model {version}: boxes or scores are not finite"
            )
        inside = (boxes[:, [0, 1]] >= -1).all() and (boxes[:, 2] <= width + 1).all()
        if not (inside and (boxes[:, 3] <= height + 1).all()):
            raise ModelUpdateError(
                Refusal.SELF_TEST, f"model {version}: boxes outside the {width}x{height} frame"
            )
        if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
            raise ModelUpdateError(Refusal.SELF_TEST, f"model {version}: boxes of negative size")
        if ((scores < 0) | (scores > 1)).any():
            raise ModelUpdateError(Refusal.SELF_TEST, f"model {version}: scores outside 0..1")


def self_test(
    candidate: TestedModel,
    running: TestedModel,
    frames: Sequence[Frame],
    *,
    latency_factor: float | None,
    rounds: int,
    run: Run = classify,
    check: Check = check_probabilities,
) -> SelfTestResult:
    """Run the self-test; ModelUpdateError ('self_test' or 'latency') says why it failed.
    ``latency_factor`` None: the latency is measured, not judged. ``run`` and ``check``
    are the model kind's (a classifier's by default; ``detect``, ``check_detections``)."""
    version = candidate.version
    if not frames:
        raise ModelUpdateError(
            Refusal.SELF_TEST, f"model {version}: no recent camera frame to test on"
        )
    candidate_ms: list[float] = []
    running_ms: list[float] = []
    for round_ in range(rounds + 1):  # round 0 warms both up and is not timed
        # Taking turns at going first spreads the effect of whatever else runs.
        order = [candidate, running] if round_ % 2 else [running, candidate]
        for model in order:
            for batch in _batches(model, frames):
                if model is running:
                    elapsed, _ = _timed(run, running, batch)
                    if round_:
                        running_ms.append(elapsed)
                    continue
                try:
                    elapsed, output = _timed(run, candidate, batch)
                except Exception as err:  # a runtime's own errors on real frames count too
                    raise ModelUpdateError(
                        Refusal.SELF_TEST, f"model {version} fails on a frame: {err}"
                    ) from err
                check(version, output, batch)
                if round_:
                    candidate_ms.append(elapsed)
    result = SelfTestResult(
        len(frames),
        len(candidate_ms),
        float(np.percentile(running_ms, 95)),
        float(np.percentile(candidate_ms, 95)),
    )
    if latency_factor is not None and (
        result.candidate_p95_ms > latency_factor * result.running_p95_ms
    ):
        raise ModelUpdateError(
            Refusal.LATENCY,
            f"model {version}: p95 {result.candidate_p95_ms:.2f} ms per call is more than "
            f"{latency_factor:g} x the running model's {result.running_p95_ms:.2f} ms",
        )
    return result
