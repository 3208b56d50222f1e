"""The fleet's certificate authority: one folder, a key encrypted at rest, a CRL.

Layout of a fleet folder (``--dir``)::

    ca/ca.pem        CA certificate (give it to every device and server)
    ca/ca.key        CA private key, encrypted with the passphrase (mode 0600)
    ca/issued.json   every certificate issued: serial, CN, kind, expiry, revocation
    ca/crl.pem       the certificate revocation list Mosquitto reads (``crlfile``)
    servers/NAME.pem/.key   broker and gRPC server certificates, client accounts
    devices/ID/device.pem/.key   device certificates (CN = device id)

The passphrase comes from a file or ``ROADSENSE_CA_PASSPHRASE``, never from
the command line. Private keys are created with mode 0600 from the start
(never written world-readable and then chmod-ed). Writers of ``issued.json``
and ``crl.pem`` hold a file lock, so the cloud (enrollment, revocation) and
the CLI can share one folder.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roadsense.core.errors import ProvisioningError
from roadsense.core.files import replace_file
from roadsense.proto.topics import is_identifier

logger = logging.getLogger(__name__)

PASSPHRASE_ENV = "ROADSENSE_CA_PASSPHRASE"
MIN_PASSPHRASE = 12
CRL_DAYS = 365
"""OpenSSL refuses every client once the CRL's next update is past: re-sign it in time."""
CertKind = Literal["server", "client", "device"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class IssuedCertificate:
    """One line of the CA's record of what it signed."""

    serial: str
    common_name: str
    kind: CertKind
    not_after: str
    issued_at: str
    revoked_at: str | None = None
    reason: str = ""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def read_passphrase(passphrase_file: Path | None) -> bytes:
    """The CA passphrase from ``passphrase_file`` or the environment."""
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ProvisioningError(
                f"{passphrase_file}: cannot read the CA passphrase: {err.strerror}"
            ) from err
        source = str(passphrase_file)
    else:
        text = os.environ.get(PASSPHRASE_ENV, "")
        source = PASSPHRASE_ENV
    if not text:
        raise ProvisioningError(f"no CA passphrase: give --passphrase-file or set {PASSPHRASE_ENV}")
    if len(text) < MIN_PASSPHRASE:
        raise ProvisioningError(f"{source}: the CA passphrase needs {MIN_PASSPHRASE}+ characters")
    return text.encode()


def write_private(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 from its creation on (replacing atomically)."""
    replace_file(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    replace_file(path, data, 0o644)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key (small, fast, what Jetson-class OpenSSL handles well)."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of a key, encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def common_name(name: x509.Name) -> str:
    """The CN of a name ('' when absent)."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


class CertificateAuthority:
    """An unlocked fleet CA: signs certificates and the CRL."""

    def __init__(self, fleet_dir: Path, key: PrivateKey, cert: x509.Certificate) -> None:
        self.fleet_dir = fleet_dir
        self._key = key
        self.cert = cert

    # -- files ---------------------------------------------------------------------------
    @staticmethod
    def ca_dir(fleet_dir: Path) -> Path:
        """Where the CA files live."""
        return fleet_dir / "ca"

    @property
    def cert_file(self) -> Path:
        """The CA certificate (PEM)."""
        return self.ca_dir(self.fleet_dir) / "ca.pem"

    @property
    def crl_file(self) -> Path:
        """The CRL (PEM) Mosquitto reads."""
        return self.ca_dir(self.fleet_dir) / "crl.pem"

    @property
    def _issued_file(self) -> Path:
        return self.ca_dir(self.fleet_dir) / "issued.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.ca_dir(self.fleet_dir) / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- create and open -----------------------------------------------------------------
    @classmethod
    def create(
        cls, fleet_dir: Path, passphrase: bytes, name: str = "RoadSense fleet CA", days: int = 3650
    ) -> CertificateAuthority:
        """A new CA in ``fleet_dir``; refuses to replace an existing one."""
        folder = cls.ca_dir(fleet_dir)
        if (folder / "ca.key").exists() or (folder / "ca.pem").exists():
            raise ProvisioningError(
                f"{folder}: a CA already exists there; refusing to overwrite it"
            )
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_private(folder / "ca.key", key_pem(key, passphrase))
        _write_public(folder / "ca.pem", cert_pem(cert))
        ca = cls(fleet_dir, key, cert)
        with ca._locked():
            ca._save_issued([])
            ca._write_crl([])
        logger.info("created CA %r in %s", name, folder)
        return ca

    @classmethod
    def open(cls, fleet_dir: Path, passphrase: bytes) -> CertificateAuthority:
        """Unlock the CA in ``fleet_dir``."""
        folder = cls.ca_dir(fleet_dir)
        try:
            key_data = (folder / "ca.key").read_bytes()
            cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
        except FileNotFoundError as err:
            raise ProvisioningError(
                f"{folder}: no CA there (run `roadsense provision init-ca` first)"
            ) from err
        try:
            key = serialization.load_pem_private_key(key_data, passphrase)
        except (ValueError, TypeError) as err:
            raise ProvisioningError(f"{folder / 'ca.key'}: wrong CA passphrase") from err
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ProvisioningError(f"{folder / 'ca.key'}: unsupported key type")
        return cls(fleet_dir, key, cert)

    # -- issuing -------------------------------------------------------------------------
    def sign(
        self,
        cn: str,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        kind: CertKind,
        days: int = 365,
        hosts: Sequence[str] = (),
    ) -> x509.Certificate:
        """Sign a certificate for ``cn`` and record its serial."""
        now = _now()
        usage = (
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            if kind == "server"
            else [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
            )
        cert = builder.sign(self._key, hashes.SHA256())
        with self._locked():
            issued = self.issued()
            issued.append(
                IssuedCertificate(
                    serial=format(cert.serial_number, "x"),
                    common_name=cn,
                    kind=kind,
                    not_after=cert.not_valid_after_utc.isoformat(),
                    issued_at=now.isoformat(),
                )
            )
            self._save_issued(issued)
        logger.info("issued %s certificate for %s (serial %x)", kind, cn, cert.serial_number)
        return cert

    def issue_files(
        self,
        cn: str,
        kind: CertKind,
        cert_file: Path,
        key_file: Path,
        *,
        days: int = 365,
        hosts: Sequence[str] = (),
    ) -> x509.Certificate:
        """A new key and certificate, written to ``key_file`` (0600) and ``cert_file``."""
        key = new_key()
        cert = self.sign(cn, key.public_key(), kind, days=days, hosts=hosts)
        write_private(key_file, key_pem(key))
        _write_public(cert_file, cert_pem(cert))
        return cert

    def sign_csr(
        self, csr: x509.CertificateSigningRequest, cn: str, days: int = 365
    ) -> x509.Certificate:
        """Sign a device CSR; only its key is used, the CN is the one given."""
        if not csr.is_signature_valid:
            raise ProvisioningError("the CSR's signature is not valid")
        public_key = csr.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            if public_key.key_size < 2048:
                raise ProvisioningError("RSA keys need 2048 bits or more")
        elif not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ProvisioningError("the CSR's key must be EC or RSA")
        return self.sign(cn, public_key, "device", days=days)

    # -- record and revocation -----------------------------------------------------------
    def issued(self) -> list[IssuedCertificate]:
        """Every certificate this CA issued, oldest first."""
        return issued_certificates(self.fleet_dir)

    def _save_issued(self, issued: list[IssuedCertificate]) -> None:
        _write_public(
            self._issued_file,
            json.dumps([asdict(i) for i in issued], indent=1).encode() + b"\n",
        )

    def revoke(self, cn: str, reason: str = "") -> list[str]:
        """Revoke every unrevoked certificate of ``cn``; rewrite the CRL; the serials."""
        with self._locked():
            now = _now().isoformat()
            revoked: list[str] = []
            issued = []
            for item in self.issued():
                if item.common_name == cn and item.revoked_at is None:
                    issued.append(replace(item, revoked_at=now, reason=reason))
                    revoked.append(item.serial)
                else:
                    issued.append(item)
            self._save_issued(issued)
            self._write_crl(issued)
        logger.info("revoked %d certificate(s) of %s", len(revoked), cn)
        return revoked

    def refresh_crl(self) -> None:
        """Sign the CRL again (a new next-update date)."""
        with self._locked():
            self._write_crl(self.issued())

    def _write_crl(self, issued: list[IssuedCertificate]) -> None:
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - datetime.timedelta(minutes=5))
            .next_update(now + datetime.timedelta(days=CRL_DAYS))
        )
        for item in issued:
            if item.revoked_at is not None:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(int(item.serial, 16))
                    .revocation_date(datetime.datetime.fromisoformat(item.revoked_at))
                    .build()
                )
        crl = builder.sign(self._key, hashes.SHA256())
        _write_public(self.crl_file, crl.public_bytes(serialization.Encoding.PEM))


def issued_certificates(fleet_dir: Path) -> list[IssuedCertificate]:
    """The CA's record of issued certificates (no passphrase needed)."""
    path = CertificateAuthority.ca_dir(fleet_dir) / "issued.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ProvisioningError(
            f"{path}: no CA record (run `roadsense provision init-ca`)"
        ) from err
    return [IssuedCertificate(**row) for row in rows]


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True when ``ca_cert`` signed ``cert``."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR."""
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError as err:
        raise ProvisioningError(f"not a PEM certificate signing request: {err}") from err


def check_device_id(device_id: str) -> str:
    """``device_id`` if it can be a CN, MQTT username and topic level."""
    if not is_identifier(device_id):
        raise ProvisioningError(
            f"device id {device_id!r} must be 1-64 letters, digits, '_', '.', '-'"
        )
    return device_id


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
