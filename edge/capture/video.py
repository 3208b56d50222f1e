"""Video readers: where a camera's capture thread gets its decoded frames from.

A reader opens one source and hands out decoded frames one at a time. Two
readers register by key: ``opencv`` (USB/V4L2 devices, GStreamer pipelines,
and files or URLs through OpenCV's FFmpeg) and ``pyav`` (FFmpeg through PyAV:
RTSP, HTTP and files, with keyframe-only decoding). A frame's pixels are
converted to BGR only when something asks for them, so a decoder that keeps
the newest of 25 frames a second pays the colour conversion only for the one
the classifier takes.
"""

from __future__ import annotations

import abc
import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass

from roadsense.core.errors import CaptureError
from roadsense.edge.config import CameraConfig
from roadsense.models.preprocess import Frame

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://")


class DecodeMode(enum.Enum):
    """Which frames a reader decodes."""

    ALL = "all"
    KEYFRAMES = "keyframes"


def source_kind(source: str) -> str:
    """'usb', 'gstreamer', 'url' or 'file'."""
    if source.isdigit():
        return "usb"
    if "!" in source:
        return "gstreamer"
    if "://" in source:
        return "url"
    return "file"


class VideoFrame:
    """One decoded frame; its BGR pixels are made on first use and kept."""

    __slots__ = (
        "_convert",
        "_image",
        "_lock",
        "height",
        "key",
        "stream_time_s",
        "timestamp_ms",
        "width",
    )

    def __init__(
        self,
        *,
        timestamp_ms: int,
        stream_time_s: float,
        width: int,
        height: int,
        key: bool,
        convert: Callable[[], Frame],
    ) -> None:
        self.timestamp_ms = timestamp_ms
        """Capture time (UTC ms), from the stream's own timestamps where it has them."""
        self.stream_time_s = stream_time_s
        """Position in the stream, seconds: what a file is paced by."""
        self.width = width
        self.height = height
        self.key = key
        self._convert: Callable[[], Frame] | None = convert
        self._image: Frame | None = None
        self._lock = threading.Lock()

    def image(self) -> Frame:
        """The frame as a BGR uint8 array (height, width, 3)."""
        with self._lock:
            if self._image is None:
                assert self._convert is not None
                self._image = self._convert()
                self._convert = None  # drop the decoder's frame once converted
            return self._image


@dataclass(frozen=True)
class ReaderFigures:
    """What a reader knows about its stream, for health."""

    decode_mode: DecodeMode
    keyframe_hz: float
    """Keyframes per second seen in the stream (0 while unknown)."""
    packets: int
    """Compressed video packets read (every frame of the stream, decoded or not)."""


class VideoReader(abc.ABC):
    """An open source; ``read()`` returns its next decoded frame."""

    paced: bool = False
    """A file, to be played at its own frame rate so it behaves like a live camera."""

    stop_requested: Callable[[], bool] = staticmethod(lambda: False)
    """Set by the capture: a reader waiting for a frame gives up (returns None) once true."""

    @abc.abstractmethod
    def read(self) -> VideoFrame | None:
        """The next decoded frame; None when the file or stream ended.

        Raises CaptureError with the reason when the source fails or stalls.
        """

    def set_sample_hz(self, sample_hz: float) -> None:  # noqa: B027 (optional)
        """The camera's sample rate changed (a reader may change what it decodes)."""

    @abc.abstractmethod
    def figures(self) -> ReaderFigures:
        """Decode mode, keyframe rate and packets read so far."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the source."""


class KeyframesMissingError(CaptureError):
    """Keyframe-only decoding starved: reopen the stream decoding every frame."""


ReaderFactory = Callable[[CameraConfig, str], VideoReader]
_READERS: dict[str, ReaderFactory] = {}


def register_reader(key: str, factory: ReaderFactory) -> None:
    """Make a reader available under ``key`` (the ``capture.type`` of a camera)."""
    _READERS[key] = factory


def reader_key(config: CameraConfig, source: str) -> str:
    """The reader a camera's source opens with: its ``capture.type``, or for ``auto``
    PyAV for network streams and OpenCV for the rest."""
    key = config.capture.type
    if key == "auto":
        return "pyav" if source.lower().startswith(NETWORK_SCHEMES) else "opencv"
    return key


def open_reader(config: CameraConfig, source: str) -> VideoReader:
    """Open ``source`` with the camera's reader; CaptureError says why it cannot."""
    key = reader_key(config, source)
    if key not in _READERS:
        # Importing the module registers the reader; PyAV is optional.
        if key == "pyav":
            from roadsense.edge.capture import pyav  # noqa: F401
        elif key == "opencv":
            from roadsense.edge.capture import opencv  # noqa: F401
    factory = _READERS.get(key)
    if factory is None:
        raise CaptureError(f"no video reader {key!r} (known: {', '.join(sorted(_READERS))})")
    return factory(config, source)
