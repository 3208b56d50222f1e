"""How a camera's stream is read and decoded (``[cameras.capture]`` in ``edge.toml``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from roadsense.core.config import ConfigModel


class AutoCaptureConfig(ConfigModel):
    """Pick the reader by the source: PyAV for RTSP/HTTP(S)/RTMP URLs, OpenCV for the rest."""

    type: Literal["auto"] = Field(default="auto", description="Reader chosen by the source.")


DECODE_THREADS = 1
"""FFmpeg decoder threads per stream of the OpenCV reader by default. A box decodes many
streams at once, each well within one core; FFmpeg's own threads (two a stream on 2 cores)
cost 1.8 times the CPU per frame of a 320x240 file (6,800 against 3,700 frames a
CPU-second, OpenCV 4.14). The PyAV reader keeps FFmpeg's choice: at 1080p one thread a
stream measured no better (docs/measurement.md)."""


class OpenCvCaptureConfig(ConfigModel):
    """OpenCV: USB/V4L2 devices, GStreamer pipelines (Jetson hardware decode), files."""

    type: Literal["opencv"] = Field(description="Read through OpenCV (decodes every frame).")
    threads: int = Field(
        default=DECODE_THREADS,
        ge=0,
        le=64,
        description="FFmpeg decoder threads for a file or URL; 0 lets FFmpeg choose.",
    )


class PyAvCaptureConfig(ConfigModel):
    """FFmpeg through PyAV: RTSP, HTTP and files, decoding keyframes only when that is
    enough for the camera's sample rate."""

    type: Literal["pyav"] = Field(description="Read through FFmpeg (PyAV).")
    rtsp_transport: Literal["tcp", "udp"] = Field(
        default="tcp",
        description="RTSP transport: tcp (interleaved, no loss on a busy network) or udp.",
    )
    open_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest wait to open the stream and read its header."
    )
    keyframes: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Decode keyframes only: auto (when sample_hz is at or below the "
        "stream's keyframe rate, otherwise every frame), always (the effective sample "
        "rate is then at most the keyframe rate) or never.",
    )
    threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="FFmpeg decoder threads when decoding every frame; 0 lets FFmpeg choose.",
    )


CaptureConfig = Annotated[
    AutoCaptureConfig | OpenCvCaptureConfig | PyAvCaptureConfig, Field(discriminator="type")
]
