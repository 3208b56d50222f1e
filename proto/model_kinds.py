"""Which of a device's models a ``ModelUpdate`` replaces: the one vocabulary of both ends.

A device runs the scene classifier (``congestion``) and, when it measures, the vehicle
detector (``detector``). A release's card says its kind (a detector card carries
``"kind": "detector"``; a classifier card carries no kind), the cloud names it in the
``ModelUpdate`` it sends, and the device hands the update to the updater of that model.
An empty kind, as clouds before detectors send it, is the classifier.
"""

from __future__ import annotations

from collections.abc import Mapping

CONGESTION = "congestion"
DETECTOR = "detector"
MODEL_KINDS = (CONGESTION, DETECTOR)


def model_kind(value: str) -> str:
    """The kind a ModelUpdate names ('' is the classifier); ValueError for an unknown one."""
    kind = value or CONGESTION
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {value[:40]!r}; known: {', '.join(MODEL_KINDS)}")
    return kind


def card_kind(card: Mapping[str, object]) -> str:
    """The kind of a model card (its parsed JSON): a card without ``kind`` is a classifier's."""
    return model_kind(str(card.get("kind") or ""))
