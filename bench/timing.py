"""Timing shared by the model benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def images_per_second(run: Callable[[], Any], batch: int, min_s: float) -> float:
    """Images per second of ``run`` (``batch`` images a call) over at least ``min_s``
    seconds, after one warm-up call."""
    run()
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_s or done == 0:
        run()
        done += batch
    return done / elapsed
