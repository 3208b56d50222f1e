"""Why a device refuses a ModelUpdate: one table that the device and the cloud both read.

A refusal travels in ``CommandReply.error`` as ``"<reason>: <why>"``. The device writes the
reason from this table; the cloud's rollout reads it back from the same table to decide
whether the refusal blames the model (it counts against the canary), is worth another try
later (a cut link), or says the device skipped the command for a later one. A reason the
table does not know (a newer device) is neither: the rollout logs it and counts it as the
device's own fault.
"""

from __future__ import annotations

import enum


class Refusal(str, enum.Enum):
    """The reason a device refused (or could not finish) a model update."""

    COMMAND = "command"
    CONFIG = "config"
    SIGNATURE = "signature"
    DISK = "disk"
    DOWNLOAD = "download"
    SIZE = "size"
    SHA256 = "sha256"
    CARD = "card"
    VERSION = "version"
    LOAD = "load"
    SELF_TEST = "self_test"
    LATENCY = "latency"
    SWAP = "swap"
    SUPERSEDED = "superseded"

    @property
    def blames_model(self) -> bool:
        """The model (or its release) is at fault, not the device."""
        return self in _MODEL_FAULTS

    @property
    def retried(self) -> bool:
        """Worth another try later: the device stays pending."""
        return self is Refusal.DOWNLOAD

    def says(self, why: str) -> str:
        """The reply's error text."""
        return f"{self.value}: {why}"


_MODEL_FAULTS = frozenset(
    {
        Refusal.SIGNATURE,
        Refusal.SHA256,
        Refusal.SIZE,
        Refusal.CARD,
        Refusal.VERSION,
        Refusal.LOAD,
        Refusal.SELF_TEST,
        Refusal.LATENCY,
        Refusal.SWAP,
    }
)

REASONS = tuple(r.value for r in Refusal)
"""Every reason, in the order the wire contract lists them."""


def refusal_of(error: str) -> Refusal | None:
    """The reason an error text starts with (``"<reason>: <why>"``); None when unknown."""
    reason, colon, _ = error.partition(":")
    if not colon:
        return None
    try:
        return Refusal(reason)
    except ValueError:
        return None
