"""Who gets a rollout's model when: the canary first, then the promotion stages."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

from roadsense.cloud.rollout.records import RolloutDevice
from roadsense.core.errors import RequestError


def canary_size(devices: int, percent: float | None, count: int | None) -> int:
    """How many canary devices: ``count`` devices, or ``percent`` of them rounded up."""
    if (percent is None) == (count is None):
        raise RequestError("give the canary as a percent of the devices or as a count")
    if count is not None:
        if not 1 <= count <= devices:
            raise RequestError(f"canary of {count} devices: give 1 to {devices}")
        return count
    assert percent is not None
    if not 0 < percent <= 100:
        raise RequestError(f"canary of {percent:g}%: give more than 0 and at most 100")
    return max(1, math.ceil(devices * percent / 100 - 1e-9))


def plan_devices(
    rollout_id: str,
    model_version: str,
    *,
    current: Mapping[str, str],
    online: Collection[str],
    canaries: int,
    stages_percent: Sequence[float],
    now: int,
) -> list[RolloutDevice]:
    """Each target device with its stage: online devices are canaries first (they can
    show the model soonest), the rest spread over the cumulative promotion stages."""
    ordered = sorted(current, key=lambda d: (d not in online, d))
    rest = sorted(ordered[canaries:])
    stage_of = {d: 0 for d in ordered[:canaries]}
    start = 0
    for stage, percent in enumerate(stages_percent, start=1):
        end = math.ceil(len(rest) * percent / 100 - 1e-9)
        for device in rest[start:end]:
            stage_of[device] = stage
        start = max(start, end)
    planned = []
    for device, stage in sorted(stage_of.items(), key=lambda item: (item[1], item[0])):
        there = current[device] == model_version
        planned.append(
            RolloutDevice(
                rollout_id=rollout_id,
                device_id=device,
                stage=stage,
                previous_version=current[device],
                want_version=model_version if there else "",
                reported_version=current[device],
                state="applied" if there else "waiting",
                error="",
                request_id="",
                sent_ms=0,
                attempts=0,
                updated_ms=now,
            )
        )
    return planned
