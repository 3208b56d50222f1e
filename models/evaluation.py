"""The T-GCN evaluation protocol, its metrics and the simple baselines.

Protocol (shared/data/BASELINES.md §1): chronological split at
``int(T * train_fraction)``; windows cut inside each part with stride 1 and
``range(len(part) - seq_len - pre_len)`` (the last possible window is dropped,
as in the reference code); metrics over all segments and all steps 1..h
together. ``masked_*`` ignore targets that were not observed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def split_point(steps: int, train_fraction: float) -> int:
    """First test row of a chronological split."""
    return int(steps * train_fraction)


def windows(part: Array, seq_len: int, pre_len: int) -> tuple[Array, Array]:
    """(inputs: n x seq_len x N, targets: n x pre_len x N), as the reference code cuts them."""
    count = len(part) - seq_len - pre_len
    if count <= 0:
        raise ValueError(f"{len(part)} steps are too few for windows of {seq_len} + {pre_len}")
    inputs = np.stack([part[i : i + seq_len] for i in range(count)])
    targets = np.stack([part[i + seq_len : i + seq_len + pre_len] for i in range(count)])
    return inputs, targets


def historical_average(inputs: Array, pre_len: int) -> Array:
    """Mean of the input window, fed back step by step (the reference HA)."""
    history = list(np.moveaxis(inputs, 1, 0))  # seq_len arrays of n x N
    seq_len = len(history)
    predictions = []
    for _ in range(pre_len):
        step = np.mean(np.stack(history[-seq_len:]), axis=0)
        predictions.append(step)
        history.append(step)
    return np.stack(predictions, axis=1)


def persistence(inputs: Array, pre_len: int) -> Array:
    """The last input repeated for every step."""
    return np.repeat(inputs[:, -1:, :], pre_len, axis=1)


def metrics(truth: Array, prediction: Array, observed: npt.NDArray[np.bool_]) -> dict[str, float]:
    """RMSE, MAE, accuracy, R², explained variance (all cells) and masked RMSE/MAE."""
    a = truth.reshape(-1)
    b = prediction.reshape(-1)
    error = a - b
    rmse = float(np.sqrt(np.mean(error**2)))
    mask = observed.reshape(-1)
    masked = error[mask]
    return {
        "rmse": rmse,
        "mae": float(np.mean(np.abs(error))),
        "accuracy": float(1 - np.linalg.norm(error) / np.linalg.norm(a)),
        "r2": float(1 - np.sum(error**2) / np.sum((a - a.mean()) ** 2)),
        "var": float(1 - np.var(error) / np.var(a)),
        "masked_rmse": float(np.sqrt(np.mean(masked**2))) if masked.size else float("nan"),
        "masked_mae": float(np.mean(np.abs(masked))) if masked.size else float("nan"),
    }


def score(truth: Array, prediction: Array, observed: npt.NDArray[np.bool_]) -> dict[str, float]:
    """Metrics over all steps 1..h together, plus ``rmse_at_step`` for step h alone."""
    figures = metrics(truth, prediction, observed)
    last = truth[:, -1, :] - prediction[:, -1, :]
    figures["rmse_at_step"] = float(np.sqrt(np.mean(last**2)))
    return figures
