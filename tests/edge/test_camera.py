"""Camera capture: latest frame only, reconnection, clear states for bad sources."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from roadsense.edge.capture.camera import CameraCapture, CameraState
from roadsense.edge.config import CameraConfig
from roadsense.harness.broker import free_port

from ..conftest import SAMPLE_VIDEO
from ..support.helpers import wait_until


def _short_clip(path: Path, frames: int = 15) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 10 % 255, dtype=np.uint8))
    writer.release()
    return path


def _camera(source: str, **kwargs: object) -> CameraCapture:
    settings: dict[str, object] = {
        "id": "cam",
        "source": source,
        "segment_id": "seg",
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "fail_after": 3,
        "stall_timeout_s": 2.0,
    }
    settings.update(kwargs)
    return CameraCapture(CameraConfig.model_validate(settings))


def test_latest_frame_only_and_fps_from_the_real_clip() -> None:
    camera = _camera(str(SAMPLE_VIDEO))
    camera.start()
    try:
        assert wait_until(lambda: camera.status().frames_captured >= 90)
        first = camera.latest()
        assert first is not None
        assert first.image.shape == (240, 320, 3)
        assert wait_until(lambda: camera.latest() is not first)
        status = camera.status()
        assert status.state is CameraState.STREAMING
        assert 40 <= status.fps <= 75  # a 60 fps file is paced like a live camera
    finally:
        camera.stop()


def test_file_that_disappears_and_comes_back(tmp_path: Path) -> None:
    clip = _short_clip(tmp_path / "clip.avi")
    hidden = tmp_path / "away.avi"
    camera = _camera(str(clip), loop=True)
    camera.start()
    try:
        assert wait_until(lambda: camera.state is CameraState.STREAMING)
        clip.rename(hidden)
        assert wait_until(lambda: camera.state in (CameraState.RECONNECTING, CameraState.FAILED))
        assert "cannot open" in camera.status().problem
        assert wait_until(lambda: camera.state is CameraState.FAILED)
        before = camera.status().frames_captured
        hidden.rename(clip)
        assert wait_until(lambda: camera.state is CameraState.STREAMING, 10.0)
        assert wait_until(lambda: camera.status().frames_captured > before)
        assert camera.status().reconnects >= 3
    finally:
        camera.stop()


def test_url_that_never_opens_fails_with_a_reason() -> None:
    camera = _camera(f"rtsp://127.0.0.1:{free_port()}/nothing", stall_timeout_s=1.0)
    camera.start()
    try:
        assert wait_until(lambda: camera.state is CameraState.FAILED, 30.0)
        assert camera.status().problem.startswith("cannot open rtsp://127.0.0.1:")
        assert camera.latest() is None
    finally:
        camera.stop()


def test_corrupt_video_fails_with_a_reason(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    camera = _camera(str(corrupt))
    camera.start()
    try:
        assert wait_until(lambda: camera.state is CameraState.FAILED, 30.0)
        assert str(corrupt) in camera.status().problem
    finally:
        camera.stop()


def test_non_looping_file_ends(tmp_path: Path) -> None:
    camera = _camera(str(_short_clip(tmp_path / "clip.avi")), loop=False)
    camera.start()
    try:
        assert wait_until(lambda: camera.state is CameraState.ENDED)
        assert camera.status().frames_captured == 15
        assert camera.status().problem == "the video file ended"
    finally:
        camera.stop()


def test_a_file_is_decoded_on_one_thread_unless_configured() -> None:
    from roadsense.edge.capture.opencv import OpenCvReader

    def threads(**capture: object) -> float:
        settings: dict[str, object] = {
            "id": "cam",
            "source": str(SAMPLE_VIDEO),
            "segment_id": "seg",
        }
        if capture:
            settings["capture"] = {"type": "opencv", **capture}
        reader = OpenCvReader(CameraConfig.model_validate(settings), str(SAMPLE_VIDEO))
        try:
            assert reader.read() is not None
            return float(reader._capture.get(cv2.CAP_PROP_N_THREADS))
        finally:
            reader.close()

    assert threads() == 1  # the auto reader: one FFmpeg thread a stream
    assert threads(type="opencv") == 1
    assert threads(threads=3) == 3
