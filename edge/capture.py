"""Camera capture: one thread per camera that always holds only the latest frame.

Sources are whatever OpenCV opens: a video file (paced at its own frame rate,
so it behaves like a live camera), an RTSP/HTTP URL, a USB/V4L2 index, or a
GStreamer pipeline string (Jetson hardware decode, when OpenCV has GStreamer).
A stream that stops delivering is reopened with exponential backoff and jitter.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import cast

import cv2

from roadsense.core.timeutil import now_ms
from roadsense.edge.config import CameraConfig
from roadsense.edge.preprocess import Frame

logger = logging.getLogger(__name__)


class CameraState(enum.Enum):
    """What a camera is doing, as reported in health."""

    STARTING = "starting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    ENDED = "ended"


@dataclass(frozen=True)
class CapturedFrame:
    """A decoded frame and when it was captured."""

    camera_id: str
    index: int
    capture_time_ms: int
    image: Frame


def _open(source: str) -> cv2.VideoCapture:
    if source.isdigit():
        return cv2.VideoCapture(int(source))
    if "!" in source:  # a GStreamer pipeline
        return cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    return cv2.VideoCapture(source)


def _is_file(source: str) -> bool:
    return not source.isdigit() and "://" not in source and "!" not in source


class CameraCapture:
    """Reads one camera on its own thread; ``latest()`` returns the newest frame."""

    def __init__(
        self,
        config: CameraConfig,
        stall_timeout_s: float = 10.0,
        backoff_min_s: float = 1.0,
        backoff_max_s: float = 60.0,
        max_failures: int | None = None,
    ) -> None:
        self.config = config
        self._stall_timeout_s = stall_timeout_s
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._max_failures = max_failures
        self._lock = threading.Lock()
        self._latest: CapturedFrame | None = None
        self._state = CameraState.STARTING
        self._frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{config.id}", daemon=True)

    @property
    def state(self) -> CameraState:
        """Current state of the stream."""
        with self._lock:
            return self._state

    @property
    def frames_captured(self) -> int:
        """Frames decoded since start."""
        with self._lock:
            return self._frames

    def latest(self) -> CapturedFrame | None:
        """The newest decoded frame, or None before the first one."""
        with self._lock:
            return self._latest

    def start(self) -> None:
        """Start the capture thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the capture thread and release the source."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _set_state(self, state: CameraState) -> None:
        with self._lock:
            if self._state is not state:
                logger.info("camera %s: %s", self.config.id, state.value)
            self._state = state

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            delivered = self._stream_once()
            if self._state is CameraState.ENDED or self._stop.is_set():
                return
            failures = 0 if delivered else failures + 1
            if self._max_failures is not None and failures >= self._max_failures:
                self._set_state(CameraState.FAILED)
                return
            self._set_state(CameraState.RECONNECTING)
            delay = min(self._backoff_max_s, self._backoff_min_s * 2 ** max(failures - 1, 0))
            self._stop.wait(delay * random.uniform(0.5, 1.0))

    def _stream_once(self) -> bool:
        """Open the source and read until it ends or stalls; True if any frame came."""
        source = self.config.source
        capture = _open(source)
        if not capture.isOpened():
            logger.warning("camera %s: cannot open %s", self.config.id, source)
            capture.release()
            return False
        is_file = _is_file(source)
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        frame_period = 1.0 / fps if is_file and 0 < fps <= 240 else 0.0
        delivered = False
        next_due = time.monotonic()
        last_frame_at = time.monotonic()
        try:
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok:
                    if is_file and self.config.loop and delivered:
                        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        continue
                    if is_file:
                        self._set_state(CameraState.ENDED)
                    elif time.monotonic() - last_frame_at < self._stall_timeout_s:
                        self._stop.wait(0.05)
                        continue
                    return delivered
                last_frame_at = time.monotonic()
                delivered = True
                with self._lock:
                    self._frames += 1
                    self._latest = CapturedFrame(
                        self.config.id, self._frames, now_ms(), cast(Frame, image)
                    )
                    if self._state is not CameraState.STREAMING:
                        logger.info("camera %s: streaming", self.config.id)
                    self._state = CameraState.STREAMING
                if frame_period:
                    # Pace a file at its own frame rate so it behaves like a camera.
                    next_due += frame_period
                    self._stop.wait(max(0.0, next_due - time.monotonic()))
        finally:
            capture.release()
        return delivered
