"""Class probabilities → congestion level on the city's 0-10 scale.

The labels of a model card are ordered from free flow to jammed. The level
is the expected class index scaled onto 0-10 (in the spirit of the traffic
performance index of Chinese cities: 0-2 free flow ... 8-10 severe), so a
model with any number of ordered classes maps onto one scale.
"""

from __future__ import annotations

from collections.abc import Sequence

LEVEL_MAX = 10.0


def level_from_probabilities(probabilities: Sequence[float]) -> float:
    """Expected ordinal class scaled onto 0-10; needs at least two classes."""
    classes = len(probabilities)
    if classes < 2:
        raise ValueError("need at least two classes")
    total = sum(probabilities)
    expected = sum(i * p for i, p in enumerate(probabilities)) / total
    return round(expected / (classes - 1) * LEVEL_MAX, 3)
