"""Daily profiles learnt from a training part, without torch.

Per segment and time-of-day slot: the mean of the observed normalised values
and the share of steps that were observed. Both are smoothed over neighbouring
slots (a box of ``half_width`` slots on each side, wrapping round midnight)
and shrunk towards the segment's overall figure with ``prior`` pseudo-steps,
so a slot seen on few days leans on the segment's mean instead of on noise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def _slot_sums(
    data: npt.NDArray[np.float64], slots: npt.NDArray[np.int64], slots_per_day: int
) -> npt.NDArray[np.float64]:
    """segments x slots: ``data`` (steps x segments) summed per time-of-day slot."""
    sums = np.zeros((data.shape[1], slots_per_day))
    np.add.at(sums.T, slots, data)
    return sums


def _smooth(table: npt.NDArray[np.float64], half_width: int) -> npt.NDArray[np.float64]:
    """Box sum over slot +-half_width, wrapping round midnight."""
    width = min(half_width, (table.shape[1] - 1) // 2)
    return sum((np.roll(table, shift, axis=1) for shift in range(-width, width + 1)), table * 0)


def daily_profile(
    normalised: npt.NDArray[np.float64],
    observed: npt.NDArray[np.bool_],
    slots: npt.NDArray[np.int64],
    *,
    slots_per_day: int,
    half_width: int,
    prior: float,
) -> tuple[FloatArray, FloatArray]:
    """(mean value, observed share), each segments x slots_per_day."""
    seen = observed.astype(np.float64)
    value_sums = _smooth(
        _slot_sums(np.where(observed, normalised, 0.0), slots, slots_per_day), half_width
    )
    seen_counts = _smooth(_slot_sums(seen, slots, slots_per_day), half_width)
    step_counts = _smooth(_slot_sums(np.ones_like(seen), slots, slots_per_day), half_width)
    total_seen = seen.sum(axis=0)
    segment_mean = np.where(
        total_seen > 0,
        np.where(observed, normalised, 0.0).sum(axis=0) / np.maximum(total_seen, 1),
        0,
    )
    segment_share = total_seen / max(len(seen), 1)
    mean = (value_sums + prior * segment_mean[:, None]) / np.maximum(seen_counts + prior, 1e-9)
    share = (seen_counts + prior * segment_share[:, None]) / np.maximum(step_counts + prior, 1e-9)
    return mean.astype(np.float32), share.astype(np.float32)
