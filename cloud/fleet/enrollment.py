"""Enrollment by claim and revocation: the logic behind FleetService.

A device holding an enrollment token (short-lived, limited-use, kept only as
its SHA-256) sends a CSR; the cloud checks the token, signs the CSR with the
fleet CA (CN = device id) and returns the certificate with the device's edge
configuration from the manifest. Revocation puts the device's certificates
on the CRL the broker reads and marks it revoked, so ingest rejects it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from roadsense.cloud.api.auth import hash_token, new_token
from roadsense.cloud.config import EnrollmentConfig
from roadsense.cloud.domain import RegistryEntry
from roadsense.cloud.fleet.rows import FleetStore
from roadsense.core.errors import (
    EnrollmentError,
    NotFoundError,
    ProvisioningError,
    RoadSenseError,
)
from roadsense.provisioning.ca import (
    CertificateAuthority,
    cert_pem,
    check_device_id,
    common_name,
    load_csr,
    read_passphrase,
)
from roadsense.provisioning.manifest import edge_config_toml, load_manifest
from roadsense.provisioning.model_key import model_public_key

logger = logging.getLogger(__name__)

Refusal = Literal["token", "csr", "device"]


class EnrollmentRefusedError(EnrollmentError):
    """An enrollment request is refused; ``kind`` says which part was wrong."""

    def __init__(self, kind: Refusal, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Enrolled:
    """What a device receives."""

    device_id: str
    certificate_pem: bytes
    ca_pem: bytes
    edge_config_toml: str
    model_signing_key_pem: bytes = b""
    """The fleet's model-signing public key (empty: the fleet has none yet)."""


def create_token(
    store: FleetStore, now: int, ttl_s: float, uses: int = 1, device_id: str | None = None
) -> str:
    """A new enrollment token (returned once; the store keeps its hash)."""
    if ttl_s <= 0 or uses < 1:
        raise ProvisioningError("a token needs a positive lifetime and at least one use")
    if device_id is not None:
        check_device_id(device_id)
    token, digest = new_token()
    store.add_enrollment_token(digest, device_id, now + int(ttl_s * 1000), uses, now)
    return token


class FleetIdentity:
    """Signs enrolling devices' certificates and revokes them."""

    def __init__(self, config: EnrollmentConfig, store: FleetStore) -> None:
        self._config = config
        self._store = store
        self._ca = CertificateAuthority.open(
            config.fleet_dir, read_passphrase(config.passphrase_file)
        )
        load_manifest(config.manifest)  # a bad manifest stops the start, not the first device

    def enroll(self, token: str, csr_pem: bytes, now: int) -> Enrolled:
        """Check the token and CSR, sign, record the device."""
        try:
            csr = load_csr(csr_pem)
        except ProvisioningError as err:
            raise EnrollmentRefusedError("csr", str(err)) from err
        if not csr.is_signature_valid:
            raise EnrollmentRefusedError("csr", "the CSR's signature is not valid")
        # The token is spent only for a well-formed request.
        use = self._store.use_enrollment_token(hash_token(token), now)
        if use.outcome != "ok":
            logger.warning("enrollment refused: token %s", use.outcome.replace("_", " "))
            raise EnrollmentRefusedError("token", "enrollment token is unknown, expired or used up")
        requested = common_name(csr.subject)
        device_id = use.device_id or requested
        if requested != device_id:
            raise EnrollmentRefusedError(
                "device", f"the token is for {device_id!r}, the CSR asks for {requested!r}"
            )
        manifest = load_manifest(self._config.manifest)
        model_key = model_public_key(self._config.fleet_dir) or b""
        try:
            check_device_id(device_id)
            edge_config = edge_config_toml(manifest, device_id, model_key=bool(model_key))
        except RoadSenseError as err:
            raise EnrollmentRefusedError("device", str(err)) from err
        if device_id in self._store.revoked_devices():
            raise EnrollmentRefusedError("device", f"device {device_id!r} is revoked")
        try:
            cert = self._ca.sign_csr(csr, device_id, days=self._config.certificate_days)
        except ProvisioningError as err:
            raise EnrollmentRefusedError("csr", str(err)) from err
        serial = format(cert.serial_number, "x")
        self._store.record_enrollment(device_id, serial, now)
        logger.info("enrolled %s (certificate serial %s)", device_id, serial)
        return Enrolled(device_id, cert_pem(cert), cert_pem(self._ca.cert), edge_config, model_key)

    def revoke(
        self, device_id: str, reason: str, now: int, *, known: bool = False
    ) -> tuple[RegistryEntry, list[str]]:
        """Mark the device revoked and put its certificates on the CRL.

        The CA, the manifest, the registry, telemetry or ``known`` must know the device:
        an unknown id raises NotFoundError and changes nothing.
        """
        known = (
            known
            or any(item.common_name == device_id for item in self._ca.issued())
            or any(d.id == device_id for d in load_manifest(self._config.manifest).devices)
        )
        entry = revoke_in_registry(self._store, device_id, reason, now, known=known)
        return entry, self._ca.revoke(device_id, reason)


def revoke_in_registry(
    store: FleetStore, device_id: str, reason: str, now: int, *, known: bool = False
) -> RegistryEntry:
    """Mark a device revoked in the cloud's registry (ingest then rejects it).

    The registry or telemetry must know the device, or ``known`` says the fleet does (its
    CA, manifest or configuration); otherwise NotFoundError, and nothing is recorded.
    """
    entry = store.revoke_device(check_device_id(device_id), reason, now, known_elsewhere=known)
    if entry is None:
        raise NotFoundError(
            f"no device {device_id!r}: neither the fleet nor the cloud's registry knows it"
        )
    logger.info("device %s marked revoked (%s)", device_id, reason or "no reason given")
    return entry
