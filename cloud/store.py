"""The city store's interface: what the cloud keeps, whatever database keeps it.

Everything the cloud keeps goes through ``Store``. Two implementations share one set of
statements (``roadsense.cloud.sql_store``): ``SqliteStore``, one file for one box, and
``PostgresStore``, a server several cloud processes share. Both write each batch of messages
in one transaction, deduplicating reports on (device_id, seq).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from roadsense.cloud.domain import (
    DeviceRecord,
    HealthRecord,
    HorizonScore,
    PublishedModel,
    Reading,
    RegistryEntry,
    SegmentForecast,
    SegmentSnapshot,
    StatusUpdate,
    Telemetry,
    TokenUse,
)
from roadsense.cloud.feeds import ObservationRecord, WeatherRecord
from roadsense.cloud.rollout_records import Rollout, RolloutDevice, RolloutEvent

if TYPE_CHECKING:
    # SqliteStore lived here before the PostgreSQL store; code still imports it from here.
    from roadsense.cloud.sqlite_store import SqliteStore

__all__ = [
    "BatchResult",
    "HistoryPoint",
    "SegmentUpdater",
    "SharedFusion",
    "SqliteStore",
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


class Store(abc.ABC):
    """Persistence of reports, segments, devices, health and dead letters."""

    @abc.abstractmethod
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

    @abc.abstractmethod
    def segments(self, segment_ids: Sequence[str] | None = None) -> list[SegmentSnapshot]:
        """Every known segment's last stored state (only those named, when named)."""

    @abc.abstractmethod
    def latest_readings(self, arrived_within_ms: int | None = None) -> list[Reading]:
        """The newest reading of every camera; with ``arrived_within_ms``, the newest of
        those received no later than that after their capture."""

    @abc.abstractmethod
    def devices(self) -> list[DeviceRecord]:
        """The device registry."""

    @abc.abstractmethod
    def device_counts(self) -> tuple[int, int]:
        """(online, offline) devices in the registry."""

    @abc.abstractmethod
    def report_keys(self) -> list[tuple[str, int]]:
        """Every stored (device_id, seq), in insertion order."""

    @abc.abstractmethod
    def dead_letters(self) -> list[tuple[str, str]]:
        """(topic, reason) of every distinct rejected message, oldest first; a repeat of the
        same message (topic and payload) for the same problem is counted, not listed again."""

    @abc.abstractmethod
    def history(self, segment_id: str, from_ms: int, to_ms: int) -> list[HistoryPoint]:
        """A segment's history intervals starting within [from_ms, to_ms]."""

    @abc.abstractmethod
    def histories(self, from_ms: int, to_ms: int) -> dict[str, list[HistoryPoint]]:
        """Every segment's history intervals starting within [from_ms, to_ms], in one read."""

    @abc.abstractmethod
    def prune_history(self, before_ms: int) -> int:
        """Delete history intervals that start before ``before_ms``; return how many."""

    @abc.abstractmethod
    def add_observations(self, records: Sequence[ObservationRecord], received_ms: int) -> int:
        """Store observations not stored yet (segment, time, source); return how many."""

    @abc.abstractmethod
    def add_weather(self, records: Sequence[WeatherRecord], received_ms: int) -> int:
        """Store weather not stored yet (time, source); return how many."""

    @abc.abstractmethod
    def observations(self, segment_id: str, from_ms: int, to_ms: int) -> list[ObservationRecord]:
        """A segment's observations within [from_ms, to_ms], oldest first."""

    @abc.abstractmethod
    def observations_between(self, from_ms: int, to_ms: int) -> list[tuple[str, int, float]]:
        """(segment, time, value) of every observation in [from_ms, to_ms), oldest first."""

    @abc.abstractmethod
    def newest_observation_ms(self) -> int | None:
        """Time of the newest observation of any segment (None: there is none)."""

    @abc.abstractmethod
    def weather_between(self, from_ms: int, to_ms: int) -> list[tuple[int, str]]:
        """(time, code) of the weather in [from_ms, to_ms), oldest first."""

    @abc.abstractmethod
    def save_forecasts(self, forecasts: Sequence[SegmentForecast]) -> None:
        """Store forecasts, replacing any of the same segment and origin."""

    @abc.abstractmethod
    def latest_forecasts(self) -> list[SegmentForecast]:
        """Each segment's forecast from its newest origin."""

    @abc.abstractmethod
    def score_forecasts(self, complete_before_ms: int) -> int:
        """Score forecasts whose target interval ended by ``complete_before_ms`` against the
        mean observation of that interval; return how many were scored."""

    @abc.abstractmethod
    def forecast_scores(self, model_version: str) -> list[HorizonScore]:
        """Online MAE per horizon of a model version's scored forecasts."""

    @abc.abstractmethod
    def prune_forecasts(self, before_ms: int) -> int:
        """Delete forecasts made for origins before ``before_ms``; return rows deleted."""

    @abc.abstractmethod
    def dead_letter_codes(self) -> dict[str, int]:
        """How many messages were rejected, by problem code, repeats included."""

    @abc.abstractmethod
    def add_enrollment_token(
        self, token_sha256: str, device_id: str | None, expires_ms: int, uses: int, now: int
    ) -> None:
        """Keep a new enrollment token (its hash only)."""

    @abc.abstractmethod
    def use_enrollment_token(self, token_sha256: str, now: int) -> TokenUse:
        """Spend one use of a token, atomically; why not when it cannot be used."""

    @abc.abstractmethod
    def record_enrollment(self, device_id: str, certificate_serial: str, now: int) -> None:
        """Mark a device enrolled with a new certificate."""

    @abc.abstractmethod
    def revoke_device(
        self, device_id: str, reason: str, now: int, *, known_elsewhere: bool = False
    ) -> RegistryEntry | None:
        """Mark a device revoked (idempotent: the first revocation time stays).

        Only a device the registry or telemetry knows, or one ``known_elsewhere`` (by the
        fleet's CA or manifest); for any other id nothing is recorded and None is returned.
        """

    @abc.abstractmethod
    def registry(self) -> dict[str, RegistryEntry]:
        """Every device in the identity registry."""

    @abc.abstractmethod
    def revoked_devices(self) -> frozenset[str]:
        """Ids of revoked devices, whose telemetry ingest rejects."""

    @abc.abstractmethod
    def add_model(self, model: PublishedModel) -> bool:
        """Record a published model release; False (nothing changed) when its version exists."""

    @abc.abstractmethod
    def models(self) -> list[PublishedModel]:
        """Every published model release, oldest first."""

    @abc.abstractmethod
    def model(self, version: str) -> PublishedModel | None:
        """The release published as ``version``, or None."""

    @abc.abstractmethod
    def add_rollout(
        self, rollout: Rollout, devices: Sequence[RolloutDevice], event: RolloutEvent
    ) -> bool:
        """Record a new rollout, its devices and first event; False (nothing changed) when
        another rollout is still active."""

    @abc.abstractmethod
    def update_rollout(
        self,
        rollout: Rollout,
        expected_state: str,
        event: RolloutEvent | None = None,
        devices: Sequence[RolloutDevice] = (),
    ) -> bool:
        """Store a rollout's new state with its event and device rows, in one transaction,
        only if it is still in ``expected_state`` (False: someone moved it meanwhile)."""

    @abc.abstractmethod
    def save_rollout_devices(self, devices: Sequence[RolloutDevice]) -> None:
        """Store device rows of rollouts (insert or replace)."""

    @abc.abstractmethod
    def rollouts(self) -> list[Rollout]:
        """Every rollout, newest first."""

    @abc.abstractmethod
    def rollout(self, rollout_id: str) -> Rollout | None:
        """The rollout ``rollout_id``, or None."""

    @abc.abstractmethod
    def rollout_devices(self, rollout_id: str) -> list[RolloutDevice]:
        """A rollout's devices, by stage then id."""

    @abc.abstractmethod
    def rollout_events(self, rollout_id: str) -> list[RolloutEvent]:
        """A rollout's recorded transitions, oldest first."""

    @abc.abstractmethod
    def device_health(
        self, device_id: str, from_ms: int, to_ms: int, *, newest_only: bool = False
    ) -> list[HealthRecord]:
        """A device's health messages received within [from_ms, to_ms], oldest first (or
        only the newest one)."""

    @abc.abstractmethod
    def device_levels(self, device_id: str, from_ms: int, to_ms: int) -> list[float]:
        """Congestion levels of a device's reports captured within [from_ms, to_ms)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the database."""


def __getattr__(name: str) -> Any:
    # Lazily, since roadsense.cloud.sqlite_store imports this module.
    if name == "SqliteStore":
        from roadsense.cloud.sqlite_store import SqliteStore

        return SqliteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
