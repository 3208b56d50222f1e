"""The PyAV reader: FFmpeg for RTSP, HTTP and files, decoding keyframes only when
that is enough.

A city camera sends 25-30 frames a second and the classifier wants one or
two. When the camera's sample rate is at or below the stream's keyframe rate
(measured from the packets), the decoder skips every non-keyframe (FFmpeg's
``skip_frame = NONKEY``): a 1080p stream with a 1 s GOP then costs one decode
a second instead of 25. Otherwise every frame is decoded on FFmpeg's threads
and the capture keeps the newest. RTSP runs over TCP by default, with socket
and open timeouts so a dead server fails instead of blocking.

Capture times come from the stream's presentation timestamps, anchored to the
device clock by the earliest arrival seen (so frames buffered while the
stream opened are not stamped late); a stream that falls more than
``REANCHOR_MS`` behind the device clock (a pause) is anchored again.
"""

from __future__ import annotations

import collections
import itertools
import logging
import statistics
import time
from collections.abc import Iterator
from typing import Any, cast

from roadsense.core.errors import CaptureError
from roadsense.core.timeutil import now_ms
from roadsense.edge.capture.config import PyAvCaptureConfig
from roadsense.edge.capture.video import (
    DecodeMode,
    KeyframesMissingError,
    ReaderFigures,
    VideoFrame,
    VideoReader,
    register_reader,
    source_kind,
)
from roadsense.edge.config import CameraConfig
from roadsense.models.preprocess import Frame

try:
    import av
    import av.error
    from av.codec.context import Flags2

    HAVE_PYAV = True
except ImportError:  # the edge runs without PyAV on OpenCV sources
    HAVE_PYAV = False

logger = logging.getLogger(__name__)

REANCHOR_MS = 2000.0
KEYFRAMES_KEPT = 6
"""Keyframe times kept to measure the GOP (its median interval)."""
INTERVALS_TO_DECIDE = 2
NO_KEYFRAME_S = 10.0
"""Stream time without any keyframe after which keyframe-only decoding gives up."""
"""Keyframe intervals seen before ``keyframes = auto`` picks a decode mode."""


def _reason(err: Exception) -> str:
    if HAVE_PYAV and isinstance(err, av.error.ExitError):
        return "timed out"
    return str(getattr(err, "strerror", None) or err)


class PyAvReader(VideoReader):
    """Reads one source through PyAV (FFmpeg)."""

    def __init__(self, config: CameraConfig, source: str) -> None:
        if not HAVE_PYAV:
            raise CaptureError(f"cannot open {source}: the pyav reader needs PyAV (pip install av)")
        settings = (
            config.capture
            if isinstance(config.capture, PyAvCaptureConfig)
            else PyAvCaptureConfig(type="pyav")
        )
        self._source = source
        self._sample_hz = config.sample_hz
        self._policy = settings.keyframes
        read_timeout_s = config.stall_timeout_s
        options: dict[str, str] = {}
        if source.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = settings.rtsp_transport
            options["timeout"] = str(int(read_timeout_s * 1_000_000))  # socket I/O, µs
        elif "://" in source:
            options["rw_timeout"] = str(int(read_timeout_s * 1_000_000))
        began = time.monotonic()
        try:
            self._container: Any = av.open(
                source, options=options, timeout=(settings.open_timeout_s, read_timeout_s)
            )
        except (av.error.FFmpegError, OSError) as err:
            waited = time.monotonic() - began
            reason = _reason(err)
            if waited >= 0.9 * min(settings.open_timeout_s, read_timeout_s):
                # FFmpeg words a server that never answers in many ways
                # ("Invalid data found ..."): say what happened.
                reason = f"no answer within {waited:.1f} s ({reason})"
            raise CaptureError(f"cannot open {source}: {reason}") from err
        if not self._container.streams.video:
            self._container.close()
            raise CaptureError(f"cannot open {source}: it has no video stream")
        self._stream = self._container.streams.video[0]
        context = self._stream.codec_context
        # RTSP hands over a frame's slices as separate packets: let the decoder
        # assemble them instead of emitting half-decoded pictures.
        context.flags2 |= Flags2.chunks
        context.thread_type = "AUTO"
        context.thread_count = settings.threads
        self._time_base = float(self._stream.time_base or 0.0)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self._frame_period = 1.0 / float(rate) if rate else 0.04
        self.paced = source_kind(source) == "file"
        self._keyframe_hz = 0.0
        self._decided = False
        self._first_packet_time: float | None = None
        # Until the keyframe rate is known, `auto` decodes keyframes only: frames
        # before the first keyframe cannot be decoded anyway, and a box opening
        # many cameras at once does not decode them all in full.
        self._mode = DecodeMode.ALL
        if self._policy != "never":
            self._set_mode(DecodeMode.KEYFRAMES)
        self._packets: Iterator[Any] = self._container.demux(self._stream)
        self._pending: collections.deque[Any] = collections.deque()
        self._keyframes: collections.deque[float] = collections.deque(maxlen=KEYFRAMES_KEPT)
        self._packet_count = 0
        self._offset_ms: float | None = None
        self._first_time: float | None = None
        self._last_time = 0.0

    def read(self) -> VideoFrame | None:
        while not self._pending:
            if self.stop_requested():
                return None
            try:
                packet = next(self._packets)
            except StopIteration:
                return None
            except (av.error.FFmpegError, OSError) as err:
                raise CaptureError(f"the stream failed: {_reason(err)}") from err
            if packet.size:
                self._packet_count += 1
                if packet.is_keyframe:
                    self._note_keyframe(packet)
                elif self._mode is DecodeMode.KEYFRAMES:
                    self._check_keyframes_come(packet)
            try:
                self._pending.extend(packet.decode())
            except av.error.InvalidDataError as err:
                # A damaged packet (lost data on a lossy link): the next keyframe heals it.
                logger.debug("%s: undecodable packet skipped: %s", self._source, err)
        return self._video_frame(self._pending.popleft())

    def _video_frame(self, frame: Any) -> VideoFrame:
        if frame.pts is not None and self._time_base:
            stream_time = float(frame.pts) * self._time_base
        else:
            stream_time = self._last_time + self._frame_period
        self._last_time = stream_time
        if self._first_time is None:
            self._first_time = stream_time
        arrival_ms = float(now_ms())
        lag_ms = arrival_ms - stream_time * 1000.0
        if self._offset_ms is None or lag_ms - self._offset_ms > REANCHOR_MS:
            self._offset_ms = lag_ms
        else:
            self._offset_ms = min(self._offset_ms, lag_ms)

        def convert() -> Frame:
            return cast(Frame, frame.to_ndarray(format="bgr24"))

        return VideoFrame(
            timestamp_ms=round(stream_time * 1000.0 + self._offset_ms),
            stream_time_s=stream_time - self._first_time,
            width=int(frame.width),
            height=int(frame.height),
            key=bool(frame.key_frame),
            convert=convert,
        )

    def _note_keyframe(self, packet: Any) -> None:
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None or not self._time_base:
            return
        at = float(stamp) * self._time_base
        if self._keyframes and at <= self._keyframes[-1]:
            if at < self._keyframes[-1]:
                self._keyframes.clear()  # the stream restarted its clock
            else:
                return  # another slice of the same keyframe
        self._keyframes.append(at)
        intervals = [later - earlier for earlier, later in itertools.pairwise(self._keyframes)]
        if len(intervals) < INTERVALS_TO_DECIDE:
            return
        gop_s = statistics.median(intervals)
        self._keyframe_hz = 1.0 / gop_s if gop_s > 0 else 0.0
        if self._policy == "auto":
            # At or below the keyframe rate, keyframes alone give every sample.
            enough = self._sample_hz <= self._keyframe_hz * 1.02
            mode = DecodeMode.KEYFRAMES if enough else DecodeMode.ALL
            if not self._decided or mode is not self._mode:
                logger.info(
                    "%s: decoding %s (sample %.2f Hz, keyframes %.2f Hz)",
                    self._source,
                    "keyframes only" if mode is DecodeMode.KEYFRAMES else "every frame",
                    self._sample_hz,
                    self._keyframe_hz,
                )
            self._decided = True
            self._set_mode(mode)

    def _check_keyframes_come(self, packet: Any) -> None:
        """Keyframes that stop coming (intra refresh, a very long GOP) would starve a
        keyframe-only decoder."""
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None or not self._time_base:
            return
        at = float(stamp) * self._time_base
        if self._keyframes:
            since = self._keyframes[-1]
        else:
            if self._first_packet_time is None or at < self._first_packet_time:
                self._first_packet_time = at
            since = self._first_packet_time
        if at - since < NO_KEYFRAME_S:
            return
        if self._policy == "always":
            raise CaptureError(
                f"no keyframe in {NO_KEYFRAME_S:.0f} s of {self._source}: keyframes = "
                "'always' cannot decode it (use 'auto')"
            )
        # The frames skipped since the last keyframe are gone, so decoding from
        # here would give broken pictures until the next keyframe: reopen instead.
        raise KeyframesMissingError(
            f"no keyframe in {NO_KEYFRAME_S:.0f} s of stream: reopened decoding every frame"
        )

    def _set_mode(self, mode: DecodeMode) -> None:
        if mode is self._mode:
            return
        self._stream.codec_context.skip_frame = (
            "NONKEY" if mode is DecodeMode.KEYFRAMES else "DEFAULT"
        )
        self._mode = mode

    def set_sample_hz(self, sample_hz: float) -> None:
        # Taken into account at the next keyframe, on the reading thread.
        self._sample_hz = sample_hz

    def figures(self) -> ReaderFigures:
        return ReaderFigures(self._mode, round(self._keyframe_hz, 3), self._packet_count)

    def close(self) -> None:
        self._container.close()


register_reader("pyav", PyAvReader)
