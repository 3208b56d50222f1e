"""The self-test a new model passes before it replaces the running one.

Both models classify the same recent camera frames (cropped as the classifier sees them),
in turns, so they are timed under the same load: the new model's probabilities must be
finite, within 0..1 and sum to 1 on every frame, and its p95 latency per classifier call
must stay within ``latency_factor`` times the running model's (unless it is a model
that ran on the device before: a rollback is not held to the budget of the model it
replaces). Loading (and its checks of
the input shape against the card) happened before: a model that does not load never gets
here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from roadsense.core.errors import ModelUpdateError
from roadsense.edge.backends.classifier import Classifier
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


def _batches(classifier: Classifier, frames: Sequence[Frame]) -> list[Sequence[Frame]]:
    step = classifier.max_batch
    return [frames[i : i + step] for i in range(0, len(frames), step)]


def _timed(classifier: Classifier, batch: Sequence[Frame]) -> tuple[float, np.ndarray]:
    began = time.perf_counter()
    probabilities = classifier.classify(batch)
    return (time.perf_counter() - began) * 1000, np.asarray(probabilities)


def check_probabilities(version: str, probabilities: np.ndarray, frames: int) -> None:
    """Refuse output that is not one probability distribution per frame."""
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


def self_test(
    candidate: Classifier,
    running: Classifier,
    frames: Sequence[Frame],
    *,
    latency_factor: float | None,
    rounds: int,
) -> SelfTestResult:
    """Run the self-test; ModelUpdateError ('self_test' or 'latency') says why it failed.
    ``latency_factor`` None: the latency is measured, not judged."""
    version = candidate.card.version
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
                    elapsed, _ = _timed(running, batch)
                    if round_:
                        running_ms.append(elapsed)
                    continue
                try:
                    elapsed, probabilities = _timed(candidate, batch)
                except Exception as err:  # a runtime's own errors on real frames count too
                    raise ModelUpdateError(
                        Refusal.SELF_TEST, f"model {version} fails on a frame: {err}"
                    ) from err
                check_probabilities(version, probabilities, len(batch))
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
