"""Camera capture: one thread per camera that always holds only the latest frame.

Sources are whatever OpenCV opens: a video file (paced at its own frame rate,
so it behaves like a live camera, and reopened at its end when looping), an
RTSP/HTTP URL, a USB/V4L2 index, or a GStreamer pipeline string (Jetson
hardware decode, when OpenCV has GStreamer). A stream that fails or stalls is
reopened with exponential backoff and jitter; after ``fail_after`` failed
openings in a row it is reported ``failed`` and retried at the longest delay.
"""

from __future__ import annotations

import collections
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

FPS_WINDOW_S = 5.0


class CameraState(enum.Enum):
    """What a camera is doing, as reported in health."""

    STARTING = "starting"
    STREAMING = "streaming"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    ENDED = "ended"
    DISABLED = "disabled"


@dataclass(frozen=True)
class CapturedFrame:
    """A decoded frame and when it was captured."""

    camera_id: str
    index: int
    capture_time_ms: int
    image: Frame


@dataclass(frozen=True)
class CameraStatus:
    """A camera's figures for health and metrics."""

    camera_id: str
    state: CameraState
    frames_captured: int
    last_frame_ms: int
    fps: float
    reconnects: int
    problem: str


def source_kind(source: str) -> str:
    """'usb', 'gstreamer', 'url' or 'file'."""
    if source.isdigit():
        return "usb"
    if "!" in source:
        return "gstreamer"
    if "://" in source:
        return "url"
    return "file"


def _open(source: str, timeout_ms: int) -> cv2.VideoCapture:
    kind = source_kind(source)
    if kind == "usb":
        return cv2.VideoCapture(int(source))
    if kind == "gstreamer":
        return cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    if kind == "url":
        # Without these a dead RTSP server can block open() or read() for minutes.
        return cv2.VideoCapture(
            source,
            cv2.CAP_FFMPEG,
            [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                timeout_ms,
            ],
        )
    return cv2.VideoCapture(source)


class CameraCapture:
    """Reads one camera on its own thread; ``latest()`` returns the newest frame."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._latest: CapturedFrame | None = None
        self._state = CameraState.STARTING
        self._problem = ""
        self._frames = 0
        self._reconnects = 0
        self._frame_times: collections.deque[float] = collections.deque(maxlen=1000)
        self._last_frame_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{config.id}", daemon=True)

    def latest(self) -> CapturedFrame | None:
        """The newest decoded frame, or None before the first one."""
        with self._lock:
            return self._latest

    @property
    def state(self) -> CameraState:
        """Current state; a stream without frames for ``stall_timeout_s`` is stalled."""
        with self._lock:
            state, last = self._state, self._last_frame_at
        if state is CameraState.STREAMING and time.monotonic() - last > self.config.stall_timeout_s:
            return CameraState.STALLED
        return state

    def status(self) -> CameraStatus:
        """Figures for health and metrics."""
        state = self.state
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._frame_times if now - t <= FPS_WINDOW_S]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
            if now - (recent[-1] if recent else 0.0) > FPS_WINDOW_S:
                fps = 0.0
            return CameraStatus(
                camera_id=self.config.id,
                state=state,
                frames_captured=self._frames,
                last_frame_ms=self._latest.capture_time_ms if self._latest else 0,
                fps=round(fps, 2),
                reconnects=self._reconnects,
                problem="" if state is CameraState.STREAMING else self._problem,
            )

    def start(self) -> None:
        """Start the capture thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the capture thread and release the source."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _set_state(self, state: CameraState, problem: str = "") -> None:
        with self._lock:
            changed = self._state is not state
            self._state = state
            if problem:
                self._problem = problem
        if changed:
            if problem:
                logger.warning("camera %s: %s: %s", self.config.id, state.value, problem)
            else:
                logger.info("camera %s: %s", self.config.id, state.value)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            delivered, ended = self._stream_once()
            if self._stop.is_set():
                return
            if ended and not self.config.loop:
                self._set_state(CameraState.ENDED, "the video file ended")
                return
            if ended and delivered:
                continue  # a looping file: reopen at once
            failures = 0 if delivered else failures + 1
            state = (
                CameraState.FAILED
                if failures >= self.config.fail_after
                else CameraState.RECONNECTING
            )
            self._set_state(state, self._problem)
            delay = min(
                self.config.reconnect_max_s,
                self.config.reconnect_min_s * 2 ** max(failures - 1, 0),
            )
            self._stop.wait(delay * random.uniform(0.5, 1.0))
            with self._lock:
                self._reconnects += 1

    def _stream_once(self) -> tuple[bool, bool]:
        """Open the source and read until it fails; (any frame delivered, file ended)."""
        source = self.config.source
        timeout_ms = int(self.config.stall_timeout_s * 1000)
        capture = _open(source, timeout_ms)
        if not capture.isOpened():
            capture.release()
            with self._lock:
                self._problem = f"cannot open {source}"
            return False, False
        is_file = source_kind(source) == "file"
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        frame_period = 1.0 / fps if is_file and 0 < fps <= 240 else 0.0
        delivered = False
        next_due = time.monotonic()
        failed_reads_since = 0.0
        try:
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok:
                    if is_file:
                        if not delivered:
                            with self._lock:
                                self._problem = f"no decodable frame in {source}"
                        return delivered, delivered
                    failed_reads_since = failed_reads_since or time.monotonic()
                    if time.monotonic() - failed_reads_since > self.config.stall_timeout_s:
                        with self._lock:
                            self._problem = "the stream stopped delivering frames"
                        return delivered, False
                    self._stop.wait(0.05)
                    continue
                failed_reads_since = 0.0
                delivered = True
                self._store(cast(Frame, image))
                if frame_period:
                    # Pace a file at its own frame rate so it behaves like a camera.
                    next_due = max(next_due + frame_period, time.monotonic() - 1.0)
                    self._stop.wait(max(0.0, next_due - time.monotonic()))
        finally:
            capture.release()
        return delivered, False

    def _store(self, image: Frame) -> None:
        now = time.monotonic()
        with self._lock:
            self._frames += 1
            self._latest = CapturedFrame(self.config.id, self._frames, now_ms(), image)
            self._frame_times.append(now)
            self._last_frame_at = now
            streaming_now = self._state is not CameraState.STREAMING
            self._state = CameraState.STREAMING
        if streaming_now:
            logger.info("camera %s: streaming", self.config.id)
