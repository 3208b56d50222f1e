"""`roadsense bench edge --source rtsp`: how many RTSP cameras one box carries at a sample rate.

The shipped clip is encoded once to H.264 at the asked resolution (25 fps, a
keyframe every ``gop`` frames, x264 ``veryfast``, no B-frames) and served by
the GStreamer RTSP server of the tests (one server process with one shared
pipeline per 8 cameras, primed by one reader before the cameras connect, so
serving costs little).
A real edge agent (shipped CNN, in-memory publisher) then runs N cameras,
first with the PyAV reader's ``keyframes = auto`` (keyframe-only at or below
the keyframe rate), then with ``keyframes = never`` (every frame decoded on FFmpeg's threads), in
the same run. A trial is sustained when every camera kept up with the live
stream (packets at >= 90 % of its frame rate, no reconnection) and the
classifier got distinct frames at >= 80 % of the sample rate. The largest N
is found by doubling, then bisecting. A trial in which a camera's stream never
started, or no packet at all arrived during the trial, measured the source, not
the box (a loaded RTSP server that did not answer): it is run again on fresh
servers, up to ``STALL_ATTEMPTS`` times, and a source that keeps stalling ends
the benchmark with the reason instead of being counted as the cameras' limit.
CPU is this process's (decoding and classifying), per camera, as a share of
one core; the server's CPU is reported apart (the primers' demuxing is
counted in this process). The machine may be shared: figures are noisy.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from roadsense.core.errors import CaptureError
from roadsense.core.publisher import MemoryPublisher
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.backends.classifier import Classifier, create_classifier
from roadsense.edge.backends.detector import Detector, create_detector
from roadsense.edge.capture.config import PyAvCaptureConfig
from roadsense.edge.config import (
    CameraConfig,
    EdgeConfig,
    OutboxConfig,
    ReportConfig,
)
from roadsense.edge.measure.config import MeasureConfig
from roadsense.edge.outbox import Outbox
from roadsense.harness.rtsp import RtspServer, encode_clip, missing_gstreamer, primed
from roadsense.models.shipped import DEFAULT_DETECTOR, SAMPLE_CLIP
from roadsense.proto.v1.telemetry_pb2 import CameraHealth

logger = logging.getLogger(__name__)

STREAM_FPS = 25
CAMERAS_PER_SERVER = 8
STARTUP_TIMEOUT_S = 30.0
SETTLE_S = 3.0
"""After every camera streams: time for the keyframe rate to be measured."""
STALL_ATTEMPTS = 3
"""Tries of a trial whose source stalled before the benchmark gives up."""


def stalled_cameras(before: Mapping[str, CameraHealth], after: Sequence[CameraHealth]) -> list[str]:
    """Cameras whose source stalled in a trial: never streamed, or nothing arrived in it.

    A saturated box still receives every camera's stream and decodes some of it (it falls
    behind); a camera that decoded nothing and saw no packet measured the server."""
    stalled = []
    for camera in after:
        earlier = before.get(camera.camera_id)
        decoded = camera.frames_captured - (earlier.frames_captured if earlier else 0)
        if camera.frames_captured == 0 or (decoded <= 0 and camera.stream_fps == 0):
            problem = f" ({camera.problem})" if camera.problem else ""
            stalled.append(f"{camera.camera_id}: {camera.state}{problem}")
    return stalled


def largest_passing(attempt: Callable[[int], bool], maximum: int, max_trials: int = 10) -> int:
    """Largest n in 1..maximum for which ``attempt(n)`` holds (doubling, then bisecting);
    0 when even one fails."""
    good, bad, trials = 0, None, 0
    n = 1
    while n <= maximum:
        trials += 1
        if not attempt(n):
            bad = n
            break
        good = n
        n = min(n * 2, maximum) if n < maximum else maximum + 1
    while bad is not None and bad - good > 1 and trials < max_trials:
        mid = (good + bad) // 2
        trials += 1
        if attempt(mid):
            good = mid
        else:
            bad = mid
    return good


def _servers_cpu_s(servers: list[RtspServer]) -> float:
    total = 0.0
    for server in servers:
        try:
            stat = Path(f"/proc/{server.pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _trial(
    cameras: int,
    mode: Literal["auto", "never"],
    urls: list[str],
    classifier: Classifier,
    servers: list[RtspServer],
    *,
    sample_hz: float,
    trial_s: float,
    workdir: Path,
    detector: Detector | None = None,
) -> dict[str, Any]:
    config = EdgeConfig(
        device_id="bench-rtsp",
        reports=ReportConfig(window=4, interval_s=5.0),
        outbox=OutboxConfig(path=workdir / f"{mode}-{cameras}.sqlite", delivery="broker"),
        health_interval_s=3600,
        measure=MeasureConfig(enabled=detector is not None),
        cameras=[
            CameraConfig(
                id=f"cam{i}",
                source=urls[i % len(urls)],
                segment_id=f"s{i}",
                sample_hz=sample_hz,
                stall_timeout_s=5.0,
                capture=PyAvCaptureConfig(type="pyav", keyframes=mode),
            )
            for i in range(cameras)
        ],
    )
    outbox = Outbox(config.outbox)
    agent = EdgeAgent(config, classifier, MemoryPublisher(), outbox, detector=detector)
    agent.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and not all(
            c.state == "streaming" for c in agent.health().cameras
        ):
            time.sleep(0.2)
        time.sleep(SETTLE_S)
        before = {c.camera_id: c for c in agent.health().cameras}
        cpu0, server0, wall0 = time.process_time(), _servers_cpu_s(servers), time.monotonic()
        time.sleep(trial_s)
        after = agent.health().cameras
        wall = time.monotonic() - wall0
        cpu = time.process_time() - cpu0
        server_cpu = _servers_cpu_s(servers) - server0
        rss_mb = (
            int(Path("/proc/self/statm").read_text().split()[1])
            * os.sysconf("SC_PAGE_SIZE")
            / 2**20
        )
    finally:
        agent.stop_capture()
        agent.forwarder.stop()
        agent.outbox.close()
    used = [(c.frames_used - before[c.camera_id].frames_used) / wall for c in after]
    arrived = [(c.frames_captured - before[c.camera_id].frames_captured) / wall for c in after]
    kept_up = all(
        c.state == "streaming" and c.reconnects == before[c.camera_id].reconnects for c in after
    )
    stream_fps = min(c.stream_fps for c in after)
    modes = sorted({c.decode_mode for c in after})
    stalled = stalled_cameras(before, after)
    sustained = (
        not stalled and kept_up and stream_fps >= 0.9 * STREAM_FPS and min(used) >= 0.8 * sample_hz
    )
    figures = {
        "cameras": cameras,
        "mode": mode,
        "decode_modes": modes,
        "sustained": sustained,
        "stalled": stalled,
        "min_used_hz": round(min(used), 2),
        "min_decoded_fps": round(min(arrived), 2),
        "min_stream_fps": round(stream_fps, 2),
        "cpu_cores": round(cpu / wall, 3),
        "cpu_per_camera": round(cpu / wall / cameras, 4),
        "server_cpu_cores": round(server_cpu / wall, 3),
        "rss_mb": round(rss_mb),
    }
    logger.info("bench rtsp: %s", figures)
    return figures


def run_rtsp_bench(
    model: Path,
    *,
    resolution: str = "1080p",
    sample_hz: float = 1.0,
    gop: int = STREAM_FPS,
    max_cameras: int = 64,
    trial_s: float = 10.0,
    clip_seconds: float = 0.0,
    measure: bool = False,
) -> dict[str, Any]:
    """Cameras sustained at ``sample_hz`` with keyframe decoding and with decode-all; with
    ``measure``, cameras measured by the shipped detector (zone, tracker, stopped rule and
    reports on) instead of classified."""
    reason = missing_gstreamer()
    if reason:
        raise CaptureError(f"the RTSP benchmark needs GStreamer's RTSP server: {reason}")
    classifier = create_classifier("onnxruntime", model)
    detector = create_detector("onnxruntime", DEFAULT_DETECTOR) if measure else None
    trials: list[dict[str, Any]] = []
    best: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="roadsense-bench-rtsp-") as tmp:
        workdir = Path(tmp)
        clip = encode_clip(
            SAMPLE_CLIP,
            workdir / "stream.mkv",
            resolution=resolution,
            fps=STREAM_FPS,
            gop=gop,
            preset="veryfast",
            seconds=clip_seconds,
        )
        modes: tuple[Literal["auto", "never"], ...] = ("auto", "never")
        for mode in modes:

            def attempt(n: int, mode: Literal["auto", "never"] = mode) -> bool:
                for _ in range(STALL_ATTEMPTS):
                    try:
                        figures = one_trial(n, mode)
                    except CaptureError as err:
                        # The server refused its primer (a shared media that failed to
                        # preroll answers 503 to every client): the source, not the box.
                        figures = {"cameras": n, "mode": mode, "sustained": False}
                        figures["stalled"] = [f"server: {err}"]
                    trials.append(figures)
                    if not figures["stalled"]:
                        return bool(figures["sustained"])
                    logger.warning(
                        "bench rtsp: %d camera(s), %s: the source stalled (%s); trying again",
                        n,
                        mode,
                        "; ".join(figures["stalled"][:3]),
                    )
                raise CaptureError(
                    f"bench rtsp: the RTSP source stalled in {STALL_ATTEMPTS} trials of {n} "
                    f"camera(s) ({mode}): {'; '.join(figures['stalled'][:3])}; a stalled "
                    "source says nothing about the box, so no figure is given"
                )

            def one_trial(n: int, mode: Literal["auto", "never"]) -> dict[str, Any]:
                # Fresh servers per trial (every trial starts at the clip's start), one
                # per CAMERAS_PER_SERVER cameras: gst-rtsp-server stops answering all its
                # clients while one of them reads slowly, which a camera never does.
                with contextlib.ExitStack() as stack:
                    servers = [
                        stack.enter_context(RtspServer({"/cam": [clip]}, shared=True))
                        for _ in range(math.ceil(n / CAMERAS_PER_SERVER))
                    ]
                    urls = [server.url("/cam") for server in servers]
                    for url in urls:
                        stack.enter_context(primed(url))
                    figures = _trial(
                        n,
                        mode,
                        urls,
                        classifier,
                        servers,
                        sample_hz=sample_hz,
                        trial_s=trial_s,
                        workdir=workdir,
                        detector=detector,
                    )
                return figures

            best[mode] = largest_passing(attempt, max_cameras)
    classifier.close()
    if detector is not None:
        detector.close()

    def cpu_at_best(mode: str) -> float | None:
        runs = [
            t
            for t in trials
            if t["mode"] == mode and t["cameras"] == best[mode] and not t["stalled"]
        ]
        return runs[-1]["cpu_per_camera"] if runs else None

    keyframes, decode_all = best["auto"], best["never"]
    return {
        "source": "rtsp",
        "model": f"detector {detector.version}" if detector else f"classifier {classifier.version}",
        "resolution": resolution,
        "sample_hz": sample_hz,
        "stream": f"H.264 {resolution} {STREAM_FPS} fps, keyframe every {gop} frames "
        f"(upscaled {SAMPLE_CLIP.name}), GStreamer RTSP over TCP on 127.0.0.1",
        "cores": os.cpu_count(),
        "cameras_keyframes": keyframes,
        "cameras_decode_all": decode_all,
        "keyframes_over_decode_all": round(keyframes / decode_all, 2) if decode_all else None,
        # At max_cameras the search stopped, not the box: the count is a lower bound.
        "keyframes_hit_max_cameras": keyframes >= max_cameras,
        "decode_all_hit_max_cameras": decode_all >= max_cameras,
        "cpu_per_camera_keyframes": cpu_at_best("auto"),
        "cpu_per_camera_decode_all": cpu_at_best("never"),
        "max_cameras": max_cameras,
        "trial_s": trial_s,
        "stalled_trials": sum(1 for t in trials if t["stalled"]),
        "trials": trials,
    }
