"""Figures a device reports about itself: inference timing, CPU, decoding, temperatures."""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roadsense.edge.capture.camera import CameraCapture, CameraState, CameraStatus
from roadsense.edge.config import CameraConfig
from roadsense.proto.v1 import telemetry_pb2

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


class CpuMeter:
    """The share of the device's CPU this process used since the previous reading."""

    MIN_WINDOW_S = 1.0

    def __init__(self) -> None:
        self.cores = os.cpu_count() or 1
        self._lock = threading.Lock()
        self._last = (time.monotonic(), time.process_time())
        self._share: float | None = None

    def share(self) -> float:
        """CPU seconds per wall second over all cores (0..1) since the previous reading;
        readings closer than ``MIN_WINDOW_S`` (a scrape right after a health message)
        repeat the last figure instead of measuring a few milliseconds."""
        now = (time.monotonic(), time.process_time())
        with self._lock:
            wall0, cpu0 = self._last
            wall = now[0] - wall0
            if wall < self.MIN_WINDOW_S and self._share is not None:
                return self._share
            self._last = now
            self._share = round((now[1] - cpu0) / wall / self.cores, 4) if wall > 0 else 0.0
            return self._share


def decode_health(status: CameraStatus) -> dict[str, Any]:
    """The decoding figures of a camera's health entry (CameraHealth fields)."""
    return {
        "frames_used": status.frames_used,
        "decode_mode": status.decode_mode,
        "keyframe_hz": status.keyframe_hz,
        "effective_sample_hz": status.effective_sample_hz,
        "stream_fps": status.stream_fps,
        "width": status.width,
        "height": status.height,
        "snapshot_state": status.snapshot_state,
    }


def camera_health(
    configured: Sequence[CameraConfig], running: Mapping[str, CameraCapture]
) -> list[telemetry_pb2.CameraHealth]:
    """Each configured camera's health: its capture's figures, or disabled."""
    cameras = []
    for camera_config in configured:
        capture = running.get(camera_config.id)
        if capture is None:
            cameras.append(
                telemetry_pb2.CameraHealth(
                    camera_id=camera_config.id,
                    state=CameraState.DISABLED.value,
                    sample_hz=camera_config.sample_hz,
                )
            )
            continue
        status = capture.status()
        cameras.append(
            telemetry_pb2.CameraHealth(
                camera_id=status.camera_id,
                state=status.state.value,
                frames_captured=status.frames_captured,
                last_frame_ms=status.last_frame_ms,
                fps=status.fps,
                sample_hz=camera_config.sample_hz,
                reconnects=status.reconnects,
                problem=status.problem,
                **decode_health(status),
            )
        )
    return cameras
