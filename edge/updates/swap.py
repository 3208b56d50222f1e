"""What the inference loop shares with a model updater's thread: the frames it ran the model
on last (the self-test runs on them) and the handover of a new model, which the loop puts
in force between two batches."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from roadsense.core.errors import ModelUpdateError
from roadsense.models.preprocess import Frame
from roadsense.proto.refusals import Refusal


class RecentFrames:
    """The last frames a model saw (the classifier's cropped to their region of interest,
    the detector's whole)."""

    def __init__(self, keep: int) -> None:
        self._frames: collections.deque[Frame] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, frames: list[Frame]) -> None:
        """Frames the model just ran on (inference loop)."""
        with self._lock:
            self._frames.extend(frames)

    def clear(self) -> None:
        """Forget them (a new model is in force: its self-test needs frames of its own)."""
        with self._lock:
            self._frames.clear()

    def take(self, count: int, wait_s: float, stopped: threading.Event) -> list[Frame]:
        """Up to ``count`` of the newest frames, waiting up to ``wait_s`` for that many."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                frames = list(self._frames)[-count:]
            if len(frames) >= count or time.monotonic() >= deadline or stopped.is_set():
                return frames
            time.sleep(0.05)


class _Request:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.done = threading.Event()
        self.pause_ms = 0.0


class ModelHandover:
    """Hands a model from an updater's thread to the inference loop."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._request: _Request | None = None

    @property
    def waiting(self) -> bool:
        """A model waits to be put in force (read by the loop between batches)."""
        return self._request is not None

    def hand_over(self, candidate: Any, run_loop_step: Callable[[], None] | None) -> float:
        """Wait until the loop took ``candidate``; the ms it paused for it. With no loop
        running, ``run_loop_step`` takes it at once. ModelUpdateError('swap') on timeout."""
        request = _Request(candidate)
        with self._lock:
            self._request = request
        if run_loop_step is not None:
            run_loop_step()
        if request.done.wait(self._timeout_s):
            return request.pause_ms
        with self._lock:
            if self._request is request:
                self._request = None
                raise ModelUpdateError(
                    Refusal.SWAP,
                    f"the inference loop did not take the model in {self._timeout_s:g} s",
                )
        request.done.wait()  # taken just now
        return request.pause_ms

    def take(self, put_in_force: Callable[[Any], None]) -> None:
        """Put the waiting model in force with ``put_in_force`` (inference loop)."""
        with self._lock:
            request, self._request = self._request, None
        if request is None:
            return
        began = time.perf_counter()
        put_in_force(request.model)
        request.pause_ms = (time.perf_counter() - began) * 1000
        request.done.set()
