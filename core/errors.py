"""The exceptions RoadSense raises; all derive from RoadSenseError."""

from __future__ import annotations

from roadsense.proto.refusals import Refusal


class RoadSenseError(Exception):
    """Base class of every error RoadSense raises on purpose."""


class ConfigError(RoadSenseError):
    """A configuration file is missing, unreadable or invalid."""


class ModelLoadError(RoadSenseError):
    """A model artifact or its card cannot be loaded or does not match."""


class UnknownBackendError(ModelLoadError):
    """No classifier backend is registered under the requested key."""


class CaptureError(RoadSenseError):
    """A camera source cannot be opened or read."""


class PayloadError(RoadSenseError):
    """A message on the wire cannot be decoded or fails validation."""


class RequestError(RoadSenseError):
    """An API request has a missing, malformed or out-of-range field."""


class NotFoundError(RoadSenseError):
    """An API request names a segment or device that is not known."""


class NotConfiguredError(RoadSenseError):
    """An API request needs a part of the service that its configuration leaves off."""


class NotServingError(RoadSenseError):
    """An API request cannot be answered now (e.g. no model loaded yet); it may later."""


class BrokerError(RoadSenseError):
    """An MQTT broker cannot be started or reached."""


class OutboxWriteError(RoadSenseError):
    """The edge outbox cannot store a report (disk full, read-only, corrupt)."""


class CommandError(RoadSenseError):
    """A remote command is malformed or asks for something invalid."""


class FootageError(RoadSenseError):
    """A video or its region of interest cannot give labelled frames or composites."""


class ProvisioningError(RoadSenseError):
    """A certificate authority, certificate, bundle or manifest operation failed."""


class EnrollmentError(ProvisioningError):
    """An enrollment request is refused (bad token, bad CSR, unknown or revoked device)."""


class StoreError(RoadSenseError):
    """The city store cannot be opened or reached."""


class ModelSignatureError(ModelLoadError):
    """A model's size, sha256 or signature does not match what the fleet published."""


class ModelRegistryError(RoadSenseError):
    """A model cannot be published, or is not in the cloud's registry."""


class AccessDeniedError(RoadSenseError):
    """An API caller's credential does not allow the request."""


class ModelDownloadError(RoadSenseError):
    """A model download was refused or cut; what it held stays for the next try."""


class ModelHashError(ModelSignatureError):
    """The downloaded bytes' sha256 is not the one the fleet signed."""


class ModelCardError(ModelSignatureError):
    """A downloaded model card is not the signed one, or describes another model."""


class ModelSizeError(ModelDownloadError):
    """The cloud serves a model of another size than the fleet signed."""


class ModelUpdateError(RoadSenseError):
    """A model update the device refused or could not finish; ``reason`` prefixes its reply."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(reason.says(message))
        self.reason = reason


class RolloutError(RoadSenseError):
    """A model rollout cannot start or change as asked."""
