"""Camera capture: one thread per stream that always holds only the latest frame.

A camera's source is read by a video reader (``roadsense.edge.capture.video``): PyAV
for RTSP/HTTP streams (keyframe-only decoding when the sample rate allows),
OpenCV for USB devices, GStreamer pipelines and files. A file is paced at its
own frame rate, so it behaves like a live camera, and reopened at its end
when looping. A stream that fails or stalls is reopened with exponential
backoff and jitter; after ``fail_after`` failed openings in a row it is
reported ``failed`` and retried at the longest delay.

A camera that names a substream (``classify_source``) runs two streams: the
classifier reads the substream, snapshots come from the main stream, which
is sampled at ``SNAPSHOT_SAMPLE_HZ`` (keyframes only where the reader can).
"""

from __future__ import annotations

import collections
import enum
import logging
import random
import threading
import time
from dataclasses import dataclass

from roadsense.core.errors import CaptureError
from roadsense.edge.capture.config import PyAvCaptureConfig
from roadsense.edge.capture.video import (
    DecodeMode,
    KeyframesMissingError,
    ReaderFigures,
    VideoFrame,
    VideoReader,
    open_reader,
)
from roadsense.edge.config import CameraConfig
from roadsense.models.preprocess import Frame

logger = logging.getLogger(__name__)

FPS_WINDOW_S = 5.0
SNAPSHOT_SAMPLE_HZ = 0.2
"""Rate the main stream of a camera with a substream is decoded at, for snapshots."""


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
    video: VideoFrame

    @property
    def image(self) -> Frame:
        """BGR pixels (converted on first use)."""
        return self.video.image()


@dataclass(frozen=True)
class CameraStatus:
    """A camera's figures for health and metrics."""

    camera_id: str
    state: CameraState
    frames_captured: int
    """Frames decoded."""
    last_frame_ms: int
    fps: float
    """Frames decoded per second over the last few seconds."""
    reconnects: int
    problem: str
    frames_used: int = 0
    """Frames the classifier took."""
    decode_mode: str = ""
    keyframe_hz: float = 0.0
    effective_sample_hz: float = 0.0
    stream_fps: float = 0.0
    """Compressed frames per second arriving (decoded or skipped)."""
    width: int = 0
    height: int = 0
    snapshot_state: str = ""
    """State of the main stream when the classifier reads a substream."""
    packets: int = 0
    """Compressed frames that arrived, decoded or skipped."""


def _rate(samples: collections.deque[tuple[float, int]], now: float) -> float:
    recent = [s for s in samples if now - s[0] <= FPS_WINDOW_S]
    if len(recent) < 2 or now - recent[-1][0] > FPS_WINDOW_S or recent[-1][0] == recent[0][0]:
        return 0.0
    return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])


class StreamCapture:
    """Reads one source on its own thread; ``latest()`` returns the newest frame."""

    def __init__(self, config: CameraConfig, source: str, role: str = "") -> None:
        self.config = config
        self.source = source
        self._lock = threading.Lock()
        self._latest: CapturedFrame | None = None
        self._state = CameraState.STARTING
        self._problem = ""
        self._frames = 0
        self._used = 0
        self._taken_index = 0
        self._reconnects = 0
        self._frame_times: collections.deque[tuple[float, int]] = collections.deque(maxlen=1000)
        self._packet_times: collections.deque[tuple[float, int]] = collections.deque(maxlen=1000)
        self._packets_before = 0
        self._figures = ReaderFigures(DecodeMode.ALL, 0.0, 0)
        self._reader: VideoReader | None = None
        self._decode_all = False  # keyframe-only decoding starved once: never again
        self._last_frame_at = 0.0
        self._stop = threading.Event()
        self._name = f"{config.id}{f' ({role})' if role else ''}"
        self._thread = threading.Thread(target=self._run, name=f"capture-{self._name}", daemon=True)

    def latest(self) -> CapturedFrame | None:
        """The newest decoded frame, or None before the first one."""
        with self._lock:
            return self._latest

    def take(self) -> CapturedFrame | None:
        """The newest frame if it was not taken before (counted as used), else None."""
        with self._lock:
            frame = self._latest
            if frame is None or frame.index == self._taken_index:
                return None
            self._taken_index = frame.index
            self._used += 1
            return frame

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
            fps = _rate(self._frame_times, now)
            stream_fps = _rate(self._packet_times, now)
            figures, latest = self._figures, self._latest
            sample_hz = self.config.sample_hz
            if figures.decode_mode is DecodeMode.KEYFRAMES:
                effective = min(sample_hz, figures.keyframe_hz)
            else:
                effective = min(sample_hz, fps)
            return CameraStatus(
                camera_id=self.config.id,
                state=state,
                frames_captured=self._frames,
                last_frame_ms=latest.capture_time_ms if latest else 0,
                fps=round(fps, 2),
                reconnects=self._reconnects,
                problem="" if state is CameraState.STREAMING else self._problem,
                frames_used=self._used,
                decode_mode=figures.decode_mode.value,
                keyframe_hz=figures.keyframe_hz,
                effective_sample_hz=round(effective, 3),
                stream_fps=round(stream_fps, 2),
                width=latest.video.width if latest else 0,
                height=latest.video.height if latest else 0,
                packets=self._packets_before + figures.packets,
            )

    def start(self) -> None:
        """Start the capture thread."""
        self._thread.start()

    def set_sample_hz(self, sample_hz: float) -> None:
        """Take a new sample rate (a remote config change) without reopening the stream."""
        with self._lock:
            if sample_hz == self.config.sample_hz:
                return
            self.config = self.config.model_copy(update={"sample_hz": sample_hz})
            reader = self._reader
        if reader is not None:
            reader.set_sample_hz(sample_hz)

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
                logger.warning("camera %s: %s: %s", self._name, state.value, problem)
            else:
                logger.info("camera %s: %s", self._name, state.value)

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

    def _fail(self, problem: str) -> None:
        with self._lock:
            self._problem = problem

    def _stream_once(self) -> tuple[bool, bool]:
        """Open the source and read until it fails; (any frame delivered, file ended)."""
        config = self.config
        if self._decode_all and isinstance(config.capture, PyAvCaptureConfig):
            config = config.model_copy(
                update={"capture": config.capture.model_copy(update={"keyframes": "never"})}
            )
        try:
            reader = open_reader(config, self.source)
        except CaptureError as err:
            self._fail(str(err))
            return False, False
        reader.stop_requested = self._stop.is_set
        with self._lock:
            self._reader = reader
            reader.set_sample_hz(self.config.sample_hz)  # it may have changed while opening
        try:
            return self._read_all(reader)
        finally:
            figures = reader.figures()
            with self._lock:
                self._reader = None
                self._packets_before += figures.packets
                self._figures = ReaderFigures(figures.decode_mode, figures.keyframe_hz, 0)
            reader.close()

    def _read_all(self, reader: VideoReader) -> tuple[bool, bool]:
        delivered = False
        started = time.monotonic()
        while not self._stop.is_set():
            try:
                frame = reader.read()
            except CaptureError as err:
                self._fail(str(err))
                self._decode_all = self._decode_all or isinstance(err, KeyframesMissingError)
                return delivered, False
            if frame is None:
                if not reader.paced:
                    self._fail("the stream ended")
                    return delivered, False
                if not delivered:
                    self._fail(f"no decodable frame in {self.source}")
                return delivered, delivered
            delivered = True
            self._store(frame, reader.figures())
            if reader.paced:
                # Pace a file at its own frame rate so it behaves like a camera.
                due = started + frame.stream_time_s
                if due < time.monotonic() - 1.0:
                    started = time.monotonic() - frame.stream_time_s
                self._stop.wait(max(0.0, due - time.monotonic()))
        return delivered, False

    def _store(self, video: VideoFrame, figures: ReaderFigures) -> None:
        now = time.monotonic()
        with self._lock:
            self._frames += 1
            self._latest = CapturedFrame(self.config.id, self._frames, video.timestamp_ms, video)
            self._frame_times.append((now, self._frames))
            self._packet_times.append((now, self._packets_before + figures.packets))
            self._figures = figures
            self._last_frame_at = now
            streaming_now = self._state is not CameraState.STREAMING
            self._state = CameraState.STREAMING
        if streaming_now:
            logger.info("camera %s: streaming", self._name)


class CameraCapture:
    """One camera: the stream the classifier reads, and the main stream for snapshots
    when the classifier reads a substream."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self._classify = StreamCapture(
            config,
            config.classify_source or config.source,
            "substream" if config.classify_source else "",
        )
        self._main = (
            StreamCapture(
                config.model_copy(update={"sample_hz": min(SNAPSHOT_SAMPLE_HZ, config.sample_hz)}),
                config.source,
                "main stream",
            )
            if config.classify_source
            else None
        )

    def latest(self) -> CapturedFrame | None:
        """The newest frame of the stream the classifier reads."""
        return self._classify.latest()

    def take(self) -> CapturedFrame | None:
        """The newest classifier frame not taken before (counted as used), else None."""
        return self._classify.take()

    def set_sample_hz(self, sample_hz: float) -> None:
        """Take a new sample rate for the classifier's stream."""
        self._classify.set_sample_hz(sample_hz)

    def still(self) -> CapturedFrame | None:
        """The newest frame for a snapshot: from the main stream when there is a substream."""
        return (self._main or self._classify).latest()

    @property
    def state(self) -> CameraState:
        """State of the stream the classifier reads."""
        return self._classify.state

    def status(self) -> CameraStatus:
        """Figures of the classifier's stream (and the main stream's state)."""
        status = self._classify.status()
        if self._main is None:
            return status
        main = self._main.status()
        snapshot_state = main.state.value + (f": {main.problem}" if main.problem else "")
        return CameraStatus(**{**status.__dict__, "snapshot_state": snapshot_state})

    def start(self) -> None:
        """Start the capture thread(s)."""
        self._classify.start()
        if self._main is not None:
            self._main.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the capture thread(s) and release the sources."""
        if self._main is not None:
            self._main.stop(timeout_s)
        self._classify.stop(timeout_s)
