"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig


def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Poll ``condition`` until it holds or the timeout passes; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def roadsense_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``roadsense ARGS`` in a fresh interpreter (``env`` added to ours); never raises."""
    return subprocess.run(
        [sys.executable, "-m", "roadsense.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env} if env else None,
    )


@contextlib.contextmanager
def running_cloud(config: CloudConfig) -> Iterator[CloudService]:
    """A started cloud service with its ingest connected; stopped on exit."""
    service = CloudService(config)
    service.start()
    try:
        assert service.ingest.wait_connected(10.0), "cloud ingest did not connect"
        yield service
    finally:
        service.stop()
