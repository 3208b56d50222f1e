"""UTC time in milliseconds, the only clock format on the wire."""

import time


def now_ms() -> int:
    """Current UTC time in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000
