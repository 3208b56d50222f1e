"""Block a service's main thread until the operator (or systemd) asks it to stop."""

import signal
import threading


def wait_for_stop_signal() -> None:
    """Return after SIGTERM or SIGINT; call from the main thread."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
