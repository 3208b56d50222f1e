"""The trained part of the classifier: a linear head on frozen pooled features, and its
temperature.

Two families, both linear in the pooled features (so the class activation map is exact:
head weights x feature map), fitted with L-BFGS, an L2 penalty and classes weighted to
equal total weight, on standardised features:

- ``multinomial``: one score per class, softmax;
- ``ordinal``: one congestion score s = w.x + b and ordered thresholds t1 < ... < t(K-1),
  P(level > k) = sigmoid(s - t(k+1)) (cumulative logit): it knows the levels are ordered,
  so an error tends to land on a neighbouring level.

Standardising is affine, so it folds into the weights (``folded``): the exported head
reads the raw pooled features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

Array = npt.NDArray[np.float32]
Family = Literal["multinomial", "ordinal"]
FAMILIES: tuple[Family, ...] = ("multinomial", "ordinal")


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
    iterations: int = 100,
) -> LinearHead:
    """Fit the head; each present class gets the same total weight."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-3
    x = torch.from_numpy((features - mean) / scale)
    y = torch.from_numpy(labels)
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    present = counts > 0
    class_weight = np.where(present, 1.0 / np.maximum(counts, 1) / present.sum(), 0.0)
    sample_weight = torch.from_numpy(class_weight[labels].astype(np.float32))
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
    classes = len(head.thresholds) + 1 if head.family == "ordinal" else head.weight.shape[0]
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    present = counts > 0
    class_weight = np.where(present, 1.0 / np.maximum(counts, 1) / present.sum(), 0.0)
    sample_weight = torch.from_numpy(class_weight[labels].astype(np.float32))
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
