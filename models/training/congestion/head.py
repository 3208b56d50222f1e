"""The trained part of the classifier: a linear head on frozen pooled features, and its
temperature.

Two families, both linear in the pooled features (so the class activation map is exact:
head weights x feature map), fitted with L-BFGS and an L2 penalty on standardised
features, with frames weighted (``Weighting``) so that each class, or each (camera, level)
pair, has the same total weight:

- ``multinomial``: one score per class, softmax;
- ``ordinal``: one congestion score s = w.x + b and ordered thresholds t1 < ... < t(K-1),
  P(level > k) = sigmoid(s - t(k+1)) (cumulative logit): it knows the levels are ordered,
  so an error tends to land on a neighbouring level.

Standardising is affine, so it folds into the weights (``folded``): the exported head
reads the raw pooled features.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

Array = npt.NDArray[np.float32]
Family = Literal["multinomial", "ordinal"]
FAMILIES: tuple[Family, ...] = ("multinomial", "ordinal")
Weighting = Literal["class", "camera-class"]
"""What gets the same total weight in the fit: each level present (``class``), or each
(camera, level) pair present (``camera-class``: a camera with many frames, or the one
camera that shows a rare level, no longer outweighs the others)."""


def sample_weights(
    labels: npt.NDArray[np.int64], groups: Sequence[str] | None = None
) -> npt.NDArray[np.float32]:
    """Per frame, 1 / (frames of its class, or of its (group, class) pair) / pairs: each
    class or pair present weighs the same, and the weights sum to 1."""
    keys: list[Hashable] = (
        [int(v) for v in labels]
        if groups is None
        else [(g, int(v)) for g, v in zip(groups, labels, strict=True)]
    )
    counts = Counter(keys)
    weight = np.asarray([1.0 / counts[k] / len(counts) for k in keys], dtype=np.float64)
    return weight.astype(np.float32)


@dataclass(frozen=True)
class LinearHead:
    """A fitted head: ``family``, weights on standardised features, thresholds (ordinal)."""

    family: Family
    weight: Array  # multinomial: classes x features; ordinal: 1 x features
    bias: Array  # multinomial: classes; ordinal: 1
    thresholds: Array  # ordinal: classes - 1 increasing; multinomial: empty
    mean: Array
    scale: Array

    def scores(self, features: Array) -> Array:
        """Linear scores (N x classes, or N x 1 for ordinal)."""
        standard = (features - self.mean) / self.scale
        return (standard @ self.weight.T + self.bias).astype(np.float32)

    def logits(self, features: Array) -> Array:
        """Log class probabilities (any additive constant per row is irrelevant)."""
        scores = self.scores(features)
        if self.family == "multinomial":
            return scores
        return np.log(np.maximum(ordinal_probabilities(scores[:, 0], self.thresholds), 1e-12))

    def folded(self) -> tuple[Array, Array]:
        """(weight, bias) of the same scores on raw features."""
        weight = self.weight / self.scale
        bias = self.bias - weight @ self.mean
        return weight.astype(np.float32), bias.astype(np.float32)


def ordinal_probabilities(score: Array, thresholds: Array) -> Array:
    """Class probabilities of the cumulative-logit model: differences of sigmoids."""
    above = 1.0 / (1.0 + np.exp(-(score[:, None] - thresholds[None, :])))  # P(y > k)
    ones = np.ones((len(score), 1))
    zeros = np.zeros((len(score), 1))
    cumulative = np.concatenate([ones, above, zeros], axis=1)
    return np.asarray(np.clip(cumulative[:, :-1] - cumulative[:, 1:], 0.0, 1.0), np.float32)


def _ordered(start: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
    return torch.cat([start, start + torch.cumsum(torch.nn.functional.softplus(gaps), 0)])


def fit_head(
    features: Array,
    labels: npt.NDArray[np.int64],
    classes: int,
    l2: float,
    *,
    family: Family = "multinomial",
    groups: Sequence[str] | None = None,
    iterations: int = 100,
) -> LinearHead:
    """Fit the head; each present class (with ``groups``, the camera of each row: each
    present (camera, class) pair) gets the same total weight."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-3
    x = torch.from_numpy((features - mean) / scale)
    y = torch.from_numpy(labels)
    sample_weight = torch.from_numpy(sample_weights(labels, groups))
    outputs = classes if family == "multinomial" else 1
    weight = torch.zeros(outputs, x.shape[1], requires_grad=True)
    bias = torch.zeros(outputs, requires_grad=True)
    start = torch.full((1,), -1.5, requires_grad=True)
    gaps = torch.zeros(classes - 2, requires_grad=True)
    parameters = [weight, bias] + ([start, gaps] if family == "ordinal" else [])
    optimiser = torch.optim.LBFGS(
        parameters, lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe"
    )

    def negative_log_likelihood() -> torch.Tensor:
        scores = x @ weight.T + bias
        if family == "multinomial":
            return torch.nn.functional.cross_entropy(scores, y, reduction="none")
        above = torch.sigmoid(scores - _ordered(start, gaps)[None, :])
        cumulative = torch.cat([torch.ones_like(scores), above, torch.zeros_like(scores)], 1)
        probability = (cumulative[:, :-1] - cumulative[:, 1:]).gather(1, y[:, None])[:, 0]
        return -torch.log(probability.clamp_min(1e-9))

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        total = (negative_log_likelihood() * sample_weight).sum() + l2 * (weight**2).sum()
        total.backward()  # type: ignore[no-untyped-call]
        return total

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    thresholds = _ordered(start, gaps).detach().numpy() if family == "ordinal" else np.zeros(0)
    return LinearHead(
        family,
        weight.detach().numpy().astype(np.float32),
        bias.detach().numpy().astype(np.float32),
        thresholds.astype(np.float32),
        mean.astype(np.float32),
        scale.astype(np.float32),
    )


def fit_temperature(logits: Array, labels: npt.NDArray[np.int64]) -> float:
    """The T > 0 minimising the negative log-likelihood of softmax(logits / T) (a 1-D search
    over log T: robust, and cheap on a few thousand frames)."""
    z = torch.from_numpy(logits.astype(np.float64))
    y = torch.from_numpy(labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 200))
    losses = [float(torch.nn.functional.cross_entropy(z / t, y)) for t in grid]
    return float(grid[int(np.argmin(losses))])


def adapt_head(
    head: LinearHead,
    features: Array,
    labels: npt.NDArray[np.int64],
    prior: float = 1e-1,
    iterations: int = 50,
) -> LinearHead:
    """The head fine-tuned on one camera's few labelled frames: their weighted negative
    log-likelihood plus ``prior`` x ||W - W0||^2, so a few dozen frames move the head
    towards that camera without forgetting the others (no validation is possible on so
    few frames: ``prior`` is fixed, not chosen)."""
    x = torch.from_numpy((features - head.mean) / head.scale)
    y = torch.from_numpy(labels)
    sample_weight = torch.from_numpy(sample_weights(labels))  # one camera: per class
    start_weight = torch.from_numpy(head.weight.copy())
    weight = start_weight.clone().requires_grad_(True)
    bias = torch.from_numpy(head.bias.copy()).requires_grad_(True)
    thresholds = torch.from_numpy(head.thresholds.copy())
    optimiser = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        scores = x @ weight.T + bias
        if head.family == "multinomial":
            loss = torch.nn.functional.cross_entropy(scores, y, reduction="none")
        else:
            above = torch.sigmoid(scores - thresholds[None, :])
            cumulative = torch.cat([torch.ones_like(scores), above, torch.zeros_like(scores)], 1)
            probability = (cumulative[:, :-1] - cumulative[:, 1:]).gather(1, y[:, None])[:, 0]
            loss = -torch.log(probability.clamp_min(1e-9))
        total = (loss * sample_weight).sum() + prior * ((weight - start_weight) ** 2).sum()
        total.backward()  # type: ignore[no-untyped-call]
        return total

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    return LinearHead(
        head.family,
        weight.detach().numpy().astype(np.float32),
        bias.detach().numpy().astype(np.float32),
        head.thresholds,
        head.mean,
        head.scale,
    )
