"""The city store's interface: what the cloud keeps, whatever database keeps it.

Everything the cloud keeps goes through ``Store``, the union of one narrow Protocol per wing:
``CityStore`` here; ``MeasurementStore``, ``ForecastStore``, ``FleetStore``, ``ReleaseStore``
and ``RolloutStore`` beside the code of their wings, each with its statements. Code takes
the narrowest part it uses. Two implementations share one set of
statements (``roadsense.cloud.store.sql``): ``SqliteStore``, one file for one box, and
``PostgresStore``, a server several cloud processes share. Both write each batch of messages
in one transaction, deduplicating reports on (device_id, seq).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from roadsense.cloud.city.rows import MeasurementStore
from roadsense.cloud.domain import (
    DeviceRecord,
    Reading,
    SegmentSnapshot,
    StatusUpdate,
    Telemetry,
)
from roadsense.cloud.fleet.rows import FleetStore
from roadsense.cloud.forecast.rows import ForecastStore
from roadsense.cloud.releases.rows import ReleaseStore
from roadsense.cloud.rollout.rows import RolloutStore

__all__ = [
    "BatchResult",
    "CityStore",
    "HistoryPoint",
    "SegmentUpdater",
    "SharedFusion",
    "Store",
]

SegmentUpdater = Callable[[list[Reading]], list[SegmentSnapshot]]


class SharedFusion(Protocol):
    """A writer's city state that other writers of the same store also change."""

    @property
    def stale_after_ms(self) -> int:
        """Cameras older than this behind a segment's newest report do not count."""

    def merge_stored(
        self, segments: Sequence[SegmentSnapshot], readings: Sequence[Reading]
    ) -> None:
        """Take stored segment rows and camera readings (other writers') before fusing."""


@dataclass
class BatchResult:
    """What one write did."""

    accepted: list[Reading] = field(default_factory=list)
    duplicates: int = 0
    rejected: int = 0
    statuses: list[StatusUpdate] = field(default_factory=list)
    health: int = 0
    segments: list[SegmentSnapshot] = field(default_factory=list)


@dataclass(frozen=True)
class HistoryPoint:
    """Mean level of a segment over one history interval."""

    start_ms: int
    level: float
    reports: int


class CityStore(Protocol):
    """Reports, segments, devices, their history and dead letters: the city's state."""

    def write_batch(
        self,
        records: Sequence[Telemetry],
        update_segments: SegmentUpdater,
        shared: SharedFusion | None = None,
    ) -> BatchResult:
        """Store records atomically; ``update_segments`` turns new readings into segment rows.

        With ``shared`` (several writers on one store), the batch first locks the segments it
        touches and hands ``shared`` their stored rows and recent camera readings, so that
        each segment is fused from every writer's reports, one writer at a time.
        """

    def segments(self, segment_ids: Sequence[str] | None = None) -> list[SegmentSnapshot]:
        """Every known segment's last stored state (only those named, when named)."""

    def latest_readings(self, arrived_within_ms: int | None = None) -> list[Reading]:
        """The newest reading of every camera; with ``arrived_within_ms``, the newest of
        those received no later than that after their capture."""

    def devices(self) -> list[DeviceRecord]:
        """The device registry."""

    def device_counts(self) -> tuple[int, int]:
        """(online, offline) devices in the registry."""

    def report_keys(self) -> list[tuple[str, int]]:
        """Every stored (device_id, seq), in insertion order."""

    def dead_letters(self) -> list[tuple[str, str]]:
        """(topic, reason) of every distinct rejected message, oldest first; a repeat of the
        same message (topic and payload) for the same problem is counted, not listed again."""

    def dead_letter_codes(self) -> dict[str, int]:
        """How many messages were rejected, by problem code, repeats included."""

    def history(self, segment_id: str, from_ms: int, to_ms: int) -> list[HistoryPoint]:
        """A segment's history intervals starting within [from_ms, to_ms]."""

    def histories(self, from_ms: int, to_ms: int) -> dict[str, list[HistoryPoint]]:
        """Every segment's history intervals starting within [from_ms, to_ms], in one read."""

    def prune_history(self, before_ms: int) -> int:
        """Delete history intervals that start before ``before_ms``; return how many."""


class Store(
    CityStore, MeasurementStore, ForecastStore, FleetStore, ReleaseStore, RolloutStore, Protocol
):
    """Everything the cloud keeps; each wing's code takes only its own part (``CityStore``,
    ``ForecastStore``, ``FleetStore``, ``ReleaseStore``, ``RolloutStore``)."""

    def close(self) -> None:
        """Release the database."""
