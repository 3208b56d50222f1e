"""What the agent counts, and its reports' way into the outbox.

A report that cannot be stored (a full or failing disk) is counted as lost and the outbox's
state says why, in the next health message; the error is logged at most once a minute, so
a dead disk does not flood the log while the cameras keep running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from roadsense.core.errors import OutboxWriteError
from roadsense.edge.outbox import Outbox

logger = logging.getLogger(__name__)

ERROR_LOG_INTERVAL_S = 60.0


@dataclass
class AgentStats:
    """Counters of one agent run."""

    frames_classified: int = 0
    uncertain_frames: int = 0
    classifier_calls: int = 0
    reports_created: int = 0
    reports_lost: int = 0
    frames_sampled: int = 0
    """Frames taken from the cameras for the classifier (each is classified)."""
    model_swaps: int = 0


class ReportLog:
    """Stores reports in the outbox and counts them."""

    def __init__(self, outbox: Outbox, stats: AgentStats) -> None:
        self._outbox = outbox
        self._stats = stats
        self.state = "ok"
        """The outbox's state: ok, or why the last report could not be stored."""
        self._last_error_log = 0.0

    def append(self, topic: str, build: Callable[[int], bytes]) -> bool:
        """Store one report (its payload built with its seq); False when it was lost."""
        try:
            self._outbox.append(topic, build)
        except OutboxWriteError as err:
            self._stats.reports_lost += 1
            self.state = str(err)
            if time.monotonic() - self._last_error_log >= ERROR_LOG_INTERVAL_S:
                self._last_error_log = time.monotonic()
                logger.error("report lost (%d so far): %s", self._stats.reports_lost, err)
            return False
        self.state = "ok"
        self._stats.reports_created += 1
        return True
