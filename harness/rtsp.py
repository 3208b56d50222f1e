"""Start the GStreamer RTSP server (``rtsp_server.py``) from the project's interpreter.

The server runs under Debian's ``/usr/bin/python3``, where the GStreamer
bindings load (``make test`` installs them); this module encodes the shipped
clip into 1080p H.264 with a fixed GOP once, and starts, stops and restarts
the server on a free loopback port. The tests and ``roadsense bench edge
--source rtsp`` both use it.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from roadsense.core.errors import CaptureError
from roadsense.harness.broker import free_port

logger = logging.getLogger(__name__)

SYSTEM_PYTHON = Path("/usr/bin/python3")
SERVER_SCRIPT = Path(__file__).resolve().with_name("rtsp_server.py")
DEBIAN_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav"
)
RESOLUTIONS = {"1080p": (1920, 1080), "720p": (1280, 720), "360p": (640, 360)}
READY_TIMEOUT_S = 20.0
LISTEN_RETRY_S = 10.0


def missing_gstreamer() -> str | None:
    """Why the RTSP server cannot run here, or None when it can."""
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); "
        "gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
        "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')"
    )
    result = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", probe], capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode:
        return f"GStreamer's RTSP server does not load (apt-get install {DEBIAN_PACKAGES})"
    return None


def encode_clip(
    source: Path,
    output: Path,
    *,
    resolution: str = "1080p",
    fps: int = 25,
    gop: int = 25,
    preset: str = "veryfast",
    seconds: float = 0.0,
) -> Path:
    """Encode ``source`` to Matroska H.264 (fixed GOP of ``gop`` frames); returns ``output``."""
    width, height = RESOLUTIONS[resolution]
    command = [
        str(SYSTEM_PYTHON),
        str(SERVER_SCRIPT),
        "encode",
        f"--input={source}",
        f"--output={output}",
        f"--width={width}",
        f"--height={height}",
        f"--fps={fps}",
        f"--gop={gop}",
        f"--preset={preset}",
        f"--seconds={seconds}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if result.returncode or not output.exists():
        raise CaptureError(f"encoding {source} failed: {result.stderr.strip()[-500:]}")
    return output


@dataclass
class RtspServer:
    """A GStreamer RTSP server subprocess on 127.0.0.1; ``mounts`` maps a path such as
    ``/cam`` to the encoded files it plays one after the other."""

    mounts: dict[str, list[Path]]
    shared: bool = False
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[str] | None = field(default=None, repr=False)
    _errors: IO[str] | None = field(default=None, repr=False)

    def url(self, mount: str) -> str:
        """The RTSP URL of a mount."""
        return f"rtsp://127.0.0.1:{self.port}{mount}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Start the server and wait until it listens. A port taken (a restart on the same
        port, which another process's outgoing connection may hold for a moment as its
        local port) is tried again for ``LISTEN_RETRY_S``."""
        deadline = time.monotonic() + LISTEN_RETRY_S
        while (problem := self._start_once()) and "cannot listen" in problem:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if problem:
            raise CaptureError(f"the RTSP server did not start: {problem}")
        logger.info("RTSP server on port %d (pid %s)", self.port, self.pid)

    def _start_once(self) -> str:
        """One try: "" when the server listens, else what it said."""
        command = [str(SYSTEM_PYTHON), str(SERVER_SCRIPT), "serve", f"--port={self.port}"]
        command += [
            f"--mount={path}={','.join(map(str, files))}" for path, files in self.mounts.items()
        ]
        if self.shared:
            command.append("--shared")
        # stderr to a file: a pipe nobody reads would block the server once full.
        errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the server)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        ready: list[str] = []
        reader = threading.Thread(
            target=lambda: ready.append(process.stdout.readline() if process.stdout else ""),
            daemon=True,
        )
        reader.start()
        reader.join(READY_TIMEOUT_S)
        if not ready or not ready[0].startswith("ready"):
            process.kill()
            process.wait(10)
            errors.seek(0)
            problem = errors.read().strip()[-500:]
            errors.close()
            return problem or "no answer"
        self._process = process
        self._errors = errors
        return ""

    def stop(self) -> None:
        """Stop the server (its clients see the stream end)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(OSError, ValueError):
            if process.stdout:
                process.stdout.close()
            if self._errors:
                self._errors.close()

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def primed(url: str) -> Iterator[None]:
    """Keep one client reading ``url`` meanwhile, so that a shared media is prepared and
    playing before many cameras connect at once (GStreamer 1.22 stalled a shared media
    that 32 clients asked for while it was still preparing)."""
    import av

    for attempt in range(5):
        try:
            container = av.open(url, options={"rtsp_transport": "tcp"}, timeout=(10.0, 10.0))
            break
        except (av.error.FFmpegError, OSError) as err:  # still preparing on a loaded box
            if attempt == 4:
                raise CaptureError(f"cannot prime {url}: {err}") from err
            time.sleep(1.0)
    done = threading.Event()

    def read() -> None:
        with contextlib.suppress(av.error.FFmpegError, OSError):
            for _ in container.demux(container.streams.video[0]):
                if done.is_set():
                    return

    reader = threading.Thread(target=read, name="rtsp-primer", daemon=True)
    reader.start()
    try:
        yield
    finally:
        done.set()
        reader.join(5.0)
        container.close()
