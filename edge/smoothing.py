"""Per-camera smoothing: the mean class probabilities of the last K frames."""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt


class ProbabilityWindow:
    """Sliding window over one camera's classified frames."""

    def __init__(self, size: int) -> None:
        self._items: deque[tuple[int, npt.NDArray[np.float32]]] = deque(maxlen=size)
        self.fresh = False
        """True when a frame arrived since the last report."""

    def add(self, capture_time_ms: int, probabilities: npt.NDArray[np.float32]) -> None:
        """Add one frame's probabilities."""
        self._items.append((capture_time_ms, probabilities))
        self.fresh = True

    def resize(self, size: int) -> None:
        """Change the window length, keeping the newest frames."""
        self._items = deque(self._items, maxlen=size)

    def clear(self) -> None:
        """Forget every frame (a new model's probabilities do not mix with the old's)."""
        self._items.clear()
        self.fresh = False

    def __len__(self) -> int:
        return len(self._items)

    def mean(self) -> npt.NDArray[np.float32]:
        """Mean probabilities over the window (not empty)."""
        if not self._items:
            raise ValueError("empty window")
        mean: npt.NDArray[np.float32] = np.mean(
            np.stack([p for _, p in self._items]), axis=0, dtype=np.float32
        )
        return mean

    def span_ms(self) -> tuple[int, int]:
        """Capture times of the oldest and newest frame in the window."""
        return self._items[0][0], self._items[-1][0]


def discount_uncertain(
    probabilities: npt.NDArray[np.float32], floor: float
) -> tuple[npt.NDArray[np.float32], bool]:
    """A frame whose top (calibrated) probability is below ``floor`` counts as uncertain:
    it enters the window as the uniform distribution, so it flattens the report (whose top
    probability is the cloud's fusion weight) instead of pushing a confident wrong level.
    Returns the row to add and whether it was uncertain; ``floor`` 0 turns this off."""
    if floor <= 0 or float(probabilities.max()) >= floor:
        return probabilities, False
    uniform = np.full_like(probabilities, 1.0 / len(probabilities))
    return uniform, True
