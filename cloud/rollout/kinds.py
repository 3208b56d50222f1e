"""Which of its devices' models a rollout replaces, and which version of it a device runs.

A rollout's kind is its release's (``PublishedModel.kind``, from the card). The classifier
in force is health's ``model_version``; the detector in force is health's
``detector_version`` (empty on a device that does not measure). A device's reply names the
version in force of the kind it updated, so replies need no such choice.
"""

from __future__ import annotations

from typing import Protocol

from roadsense.cloud.domain import PublishedModel
from roadsense.proto.model_kinds import CONGESTION, DETECTOR
from roadsense.proto.v1 import telemetry_pb2


class Releases(Protocol):
    """The part of a store that knows published releases."""

    def model(self, version: str) -> PublishedModel | None:
        """The release published as ``version``, or None."""


def release_kind(store: Releases, version: str) -> str:
    """The kind of release ``version`` (a classifier's if it is not published)."""
    model = store.model(version)
    return model.kind if model is not None else CONGESTION


def running_version(health: telemetry_pb2.DeviceHealth, kind: str) -> str:
    """The version of the ``kind`` model a health message says is in force ('': none)."""
    return health.detector_version if kind == DETECTOR else health.model_version
