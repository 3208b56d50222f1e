"""The device side of enrollment by claim: key here, CSR out, certificate back.

The private key is made on the device and never leaves it; the cloud sees
only the CSR. Nothing is overwritten: a folder that already holds a key is
refused (the device is enrolled; revoke and re-enroll to rotate).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from roadsense.core.errors import EnrollmentError, ProvisioningError
from roadsense.proto.client import ClientTls, open_channel
from roadsense.proto.v1 import fleet_pb2, fleet_pb2_grpc
from roadsense.provisioning.ca import check_device_id, key_pem, new_key, write_private
from roadsense.provisioning.model_key import PUBLIC_FILE

logger = logging.getLogger(__name__)

DEADLINE_S = 15.0


@dataclass(frozen=True)
class EnrolledFiles:
    """What enrollment wrote."""

    config_file: Path
    cert_file: Path
    key_file: Path
    ca_file: Path


def make_csr(device_id: str) -> tuple[bytes, bytes]:
    """(key PEM, CSR PEM) for ``device_id``."""
    key = new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    return key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


def request_certificate(
    channel: grpc.Channel, token: str, csr_pem: bytes
) -> fleet_pb2.EnrollResponse:
    """Call FleetService.Enroll; a refusal becomes an EnrollmentError."""
    stub = fleet_pb2_grpc.FleetServiceStub(channel)
    try:
        response: fleet_pb2.EnrollResponse = stub.Enroll(
            fleet_pb2.EnrollRequest(token=token, csr_pem=csr_pem), timeout=DEADLINE_S
        )
    except grpc.RpcError as err:
        raise EnrollmentError(f"enrollment refused ({err.code().name}): {err.details()}") from err
    return response


def enroll(
    server: str,
    token: str,
    device_id: str,
    out: Path,
    *,
    ca_file: Path | None = None,
    insecure: bool = False,
) -> EnrolledFiles:
    """Enroll ``device_id`` at ``server`` and write its files into ``out``."""
    check_device_id(device_id)
    files = EnrolledFiles(out / "edge.toml", out / "device.pem", out / "device.key", out / "ca.pem")
    if files.key_file.exists():
        raise ProvisioningError(
            f"{files.key_file} exists: this device is enrolled already "
            "(refusing to replace its key)"
        )
    if insecure:
        channel = open_channel(server)
    else:
        if ca_file is None:
            raise ProvisioningError(
                "give --ca-file (the fleet CA) to trust the cloud, or --insecure"
            )
        try:
            channel = open_channel(server, ClientTls.read(ca_file))
        except OSError as err:
            raise ProvisioningError(f"{ca_file}: cannot read: {err.strerror}") from err
    key, csr = make_csr(device_id)
    with channel:
        response = request_certificate(channel, token, csr)
    if response.device_id != device_id:
        raise EnrollmentError(f"the cloud enrolled {response.device_id!r}, not {device_id!r}")
    write_private(files.key_file, key)
    files.cert_file.write_bytes(response.certificate_pem)
    files.ca_file.write_bytes(response.ca_pem)
    files.config_file.write_text(response.edge_config_toml, encoding="utf-8")
    if response.model_signing_key_pem:
        (out / PUBLIC_FILE).write_bytes(response.model_signing_key_pem)
    logger.info("enrolled %s; files in %s", device_id, out)
    return files
