"""Per-camera smoothing: the mean class probabilities of the last K frames, and when a
classifying camera's report is due."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from roadsense.edge.config import ReportConfig


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


@dataclass(frozen=True)
class Smoothed:
    """What one report of a classifying camera carries."""

    start_ms: int
    end_ms: int
    probabilities: npt.NDArray[np.float32]
    frames: int


class SmoothedCameras:
    """Each classifying camera's window, the level it last reported and how long its
    smoothed level has held (a change is reported at once once it has held long enough)."""

    def __init__(self, camera_ids: Iterable[str], size: int) -> None:
        self.windows = {camera_id: ProbabilityWindow(size) for camera_id in camera_ids}
        self._last_label: dict[str, str] = {}
        # camera → (smoothed most probable class, classified frames it has held)
        self._streak: dict[str, tuple[str, int]] = {}

    def add(
        self,
        camera_id: str,
        capture_time_ms: int,
        row: npt.NDArray[np.float32],
        labels: list[str],
    ) -> None:
        """One classified frame of ``camera_id``."""
        window = self.windows[camera_id]
        window.add(capture_time_ms, row)
        label = labels[int(window.mean().argmax())]
        previous, held = self._streak.get(camera_id, ("", 0))
        self._streak[camera_id] = (label, held + 1 if label == previous else 1)

    def fresh(self, camera_id: str) -> bool:
        """A frame arrived since the camera's last report."""
        return self.windows[camera_id].fresh

    def urgent(self, camera_id: str, reports: ReportConfig) -> bool:
        """Report now, before the interval: the camera's first full window, or a changed
        level that has held ``change_confirm_frames``."""
        if camera_id not in self._last_label:
            return len(self.windows[camera_id]) >= reports.window
        label, held = self._streak.get(camera_id, ("", 0))
        return (
            reports.on_level_change
            and label != self._last_label[camera_id]
            and held >= reports.change_confirm_frames
        )

    def take(self, camera_id: str, labels: list[str]) -> Smoothed:
        """The camera's report, taken: the window is no longer fresh."""
        window = self.windows[camera_id]
        start_ms, end_ms = window.span_ms()
        probabilities = window.mean()
        window.fresh = False
        self._last_label[camera_id] = labels[int(probabilities.argmax())]
        return Smoothed(start_ms, end_ms, probabilities, len(window))

    def clear(self) -> None:
        """Forget every window and streak (a new model's labels may differ)."""
        for window in self.windows.values():
            window.clear()
        self._streak.clear()
