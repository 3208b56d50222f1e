"""H.265 goes through the same PyAV reader as H.264: keyframes only, at 1080p.

The clip is the shipped one scaled to 1080p and encoded to HEVC with a 1 s GOP
by PyAV's own FFmpeg (libx265), so no GStreamer H.265 element is needed.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from roadsense.edge.capture.camera import CameraCapture, CameraState
from roadsense.edge.config import CameraConfig

from ..conftest import SAMPLE_VIDEO
from ..support.helpers import wait_until

pytestmark = pytest.mark.integration

FPS = 25
FRAMES = 2 * FPS


def _hevc_clip(path: Path) -> Path:
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {
            "preset": "ultrafast",
            "x265-params": f"keyint={FPS}:min-keyint={FPS}:scenecut=0:log-level=error",
        }
        for _ in range(FRAMES):
            ok, frame = capture.read()
            assert ok
            big = cv2.resize(frame, (1920, 1080), interpolation=cv2.INTER_LINEAR)
            picture = av.VideoFrame.from_ndarray(np.asarray(big, np.uint8), format="bgr24")
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    capture.release()
    return path


def test_an_h265_stream_is_read_keyframes_only_at_1080p(tmp_path: Path) -> None:
    clip = _hevc_clip(tmp_path / "hevc-1080p.mkv")
    with av.open(str(clip)) as check:
        assert check.streams.video[0].codec_context.name == "hevc"
    config = CameraConfig.model_validate(
        {
            "id": "cam",
            "source": str(clip),
            "segment_id": "seg",
            "sample_hz": 0.5,
            "capture": {"type": "pyav"},
        }
    )
    camera = CameraCapture(config)
    camera.start()
    try:
        assert wait_until(lambda: camera.state is CameraState.ENDED, 30.0)
        status = camera.status()
        latest = camera.latest()
        assert latest is not None
        assert latest.image.shape == (1080, 1920, 3)
        assert status.decode_mode == "keyframes"
        assert status.packets >= FRAMES - 2
        assert 1 <= status.frames_captured <= status.packets / FPS + 2
        assert (status.width, status.height) == (1920, 1080)
    finally:
        camera.stop()
