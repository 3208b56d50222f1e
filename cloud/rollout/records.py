"""What the cloud keeps about a model rollout: the rollout, its devices, its transitions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RolloutState = Literal["canary", "promoting", "paused", "done", "failed", "rolled_back"]
ACTIVE_STATES: tuple[RolloutState, ...] = ("canary", "promoting", "paused")
"""A rollout in one of these still acts on the fleet; only one may be active at a time."""

DeviceState = Literal[
    "waiting", "sent", "applied", "refused", "rolling_back", "rolled_back", "superseded"
]
"""waiting: its stage has not come; sent: the ModelUpdate went out (re-sent until the
device shows the version); applied: the device runs the target; refused: the device said
why not and stays on its model; rolling_back / rolled_back: sent its previous version back;
superseded: a later rollout took the device over."""


@dataclass(frozen=True)
class Rollout:
    """One rollout of a published model to a set of devices."""

    rollout_id: str
    model_version: str
    state: RolloutState
    canary_percent: float
    stage: int
    """0: the canary; 1..N: the promotion stages sent so far."""
    stage_started_ms: int
    """When the current stage's ModelUpdates went out (0: not yet)."""
    created_ms: int
    created_by: str
    updated_ms: int
    reason: str
    """Why the rollout is in its state (the latest transition's reason)."""
    resume_state: str = ""
    """The state a paused rollout resumes into ('' unless paused)."""
    evaluation_json: str = "{}"
    """The canary evaluation's measured figures and verdict, as JSON."""


@dataclass(frozen=True)
class RolloutDevice:
    """One device of a rollout: which stage it is in and where its model stands."""

    rollout_id: str
    device_id: str
    stage: int
    """0: canary; 1..N: promotion stage."""
    previous_version: str
    """The model it ran when the rollout started (what a rollback sends back)."""
    want_version: str
    """The version the rollout wants on it now ('' while waiting for its stage)."""
    reported_version: str
    """The version the device last said it runs (reply or health)."""
    state: DeviceState
    error: str
    """The device's reason when it refused (prefix: signature:, download:, disk:, ...)."""
    request_id: str
    sent_ms: int
    """When the ModelUpdate for ``want_version`` last went out (0: never)."""
    attempts: int
    updated_ms: int


@dataclass(frozen=True)
class RolloutEvent:
    """A recorded transition: who moved the rollout from which state to which, and why."""

    rollout_id: str
    time_ms: int
    actor: str
    from_state: str
    to_state: str
    reason: str
