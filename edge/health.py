"""Figures a device reports about itself: inference timing and temperatures."""

from __future__ import annotations

import collections
import threading
from pathlib import Path

import numpy as np

THERMAL_ROOT = Path("/sys/class/thermal")


class InferenceTimer:
    """Latency and batch size of the last classifier calls."""

    def __init__(self, keep: int = 500) -> None:
        self._lock = threading.Lock()
        self._latency_ms: collections.deque[float] = collections.deque(maxlen=keep)
        self._batch: collections.deque[int] = collections.deque(maxlen=keep)

    def record(self, latency_ms: float, batch: int) -> None:
        """One classifier call."""
        with self._lock:
            self._latency_ms.append(latency_ms)
            self._batch.append(batch)

    def summary(self) -> tuple[float, float, float]:
        """(p50 ms, p95 ms, mean batch size); zeros before the first call."""
        with self._lock:
            if not self._latency_ms:
                return 0.0, 0.0, 0.0
            latencies = np.asarray(self._latency_ms)
            batch = float(np.mean(self._batch))
        p50, p95 = np.percentile(latencies, [50, 95])
        return round(float(p50), 3), round(float(p95), 3), round(batch, 2)


def read_temperatures(root: Path = THERMAL_ROOT) -> dict[str, float]:
    """Thermal zones the kernel exposes (CPU-therm, GPU-therm on Jetson), in Celsius."""
    temperatures = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            name = (zone / "type").read_text().strip()
            millidegrees = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue  # unreadable zones are common in containers
        temperatures[name or zone.name] = millidegrees / 1000.0
    return temperatures
