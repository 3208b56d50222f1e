"""Calibrated confidence and the figures that judge a congestion classifier (torch-free).

Temperature scaling (Guo et al. 2017): the exported ONNX returns softmax(z); the card's
``temperature`` T turns that into softmax(z / T). Because log softmax(z) = z - c, the
backends compute it from the probabilities alone (``apply_temperature``), so ONNX Runtime,
TensorRT and the cloud do exactly the same arithmetic.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

Probabilities = npt.NDArray[np.float32]
TINY = 1e-12


def apply_temperature(probabilities: Probabilities, temperature: float) -> Probabilities:
    """softmax(log p / T), row by row; T = 1 returns the probabilities unchanged."""
    if temperature == 1.0:
        return probabilities
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = np.log(np.maximum(probabilities.astype(np.float64), TINY)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled.astype(np.float32)


def expected_calibration_error(
    probabilities: npt.NDArray[np.floating[Any]], truth: npt.NDArray[np.int64], bins: int = 10
) -> float:
    """ECE: |accuracy - confidence| of the top class, averaged over equal-width bins
    weighted by their share of the frames."""
    if len(truth) == 0:
        return math.nan
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            gap = abs(float(correct[inside].mean()) - float(confidence[inside].mean()))
            total += gap * float(inside.mean())
    return total


def gross_error_rate(truth: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64]) -> float:
    """Share of frames two or more levels from the label (levels are ordered classes)."""
    if len(truth) == 0:
        return math.nan
    return float((np.abs(truth - predicted) >= 2).mean())
