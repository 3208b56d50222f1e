"""The OpenCV reader: USB/V4L2 devices, GStreamer pipelines, and files or URLs.

OpenCV decodes every frame. On a Jetson, JetPack's OpenCV with GStreamer runs
a pipeline string with the hardware decoder (docs/edge.md, "Jetson hardware decode").
"""

from __future__ import annotations

import time
from typing import cast

import cv2

from roadsense.core.errors import CaptureError
from roadsense.core.timeutil import now_ms
from roadsense.edge.capture.config import DECODE_THREADS, OpenCvCaptureConfig
from roadsense.edge.capture.video import (
    DecodeMode,
    ReaderFigures,
    VideoFrame,
    VideoReader,
    register_reader,
    source_kind,
)
from roadsense.edge.config import CameraConfig
from roadsense.models.preprocess import Frame

RETRY_READ_S = 0.05


def _open(source: str, timeout_ms: int, threads: int) -> cv2.VideoCapture:
    kind = source_kind(source)
    if kind == "usb":
        return cv2.VideoCapture(int(source))
    if kind == "gstreamer":
        return cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    params = [cv2.CAP_PROP_N_THREADS, threads] if threads else []
    if kind == "url":
        # Without these a dead RTSP server can block open() or read() for minutes.
        params += [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            timeout_ms,
        ]
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    return cv2.VideoCapture(source, cv2.CAP_ANY, params)


class OpenCvReader(VideoReader):
    """Reads one source through ``cv2.VideoCapture``."""

    def __init__(self, config: CameraConfig, source: str) -> None:
        self._source = source
        self._stall_s = config.stall_timeout_s
        settings = config.capture
        threads = settings.threads if isinstance(settings, OpenCvCaptureConfig) else DECODE_THREADS
        self._capture = _open(source, int(config.stall_timeout_s * 1000), threads)
        if not self._capture.isOpened():
            self._capture.release()
            raise CaptureError(f"cannot open {source}")
        self.paced = source_kind(source) == "file"
        fps = self._capture.get(cv2.CAP_PROP_FPS) or 0.0
        self._period = 1.0 / fps if 0 < fps <= 240 else 0.0
        self._frames = 0

    def read(self) -> VideoFrame | None:
        failed_since = 0.0
        while True:
            ok, image = self._capture.read()
            if ok:
                break
            if self.paced:
                if not self._frames:
                    raise CaptureError(f"no decodable frame in {self._source}")
                return None
            failed_since = failed_since or time.monotonic()
            if time.monotonic() - failed_since > self._stall_s:
                raise CaptureError("the stream stopped delivering frames")
            time.sleep(RETRY_READ_S)
        frame = cast(Frame, image)
        self._frames += 1
        height, width = frame.shape[:2]
        return VideoFrame(
            timestamp_ms=now_ms(),
            stream_time_s=self._frames * self._period,
            width=width,
            height=height,
            key=False,
            convert=lambda: frame,
        )

    def figures(self) -> ReaderFigures:
        return ReaderFigures(DecodeMode.ALL, 0.0, self._frames)

    def close(self) -> None:
        self._capture.release()


register_reader("opencv", OpenCvReader)
