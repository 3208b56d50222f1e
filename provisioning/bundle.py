"""Device bundles: edge config, certificate, key, CA, model-signing key, systemd unit.

A device's key and certificate live in ``<fleet>/devices/<id>/``; a bundle
re-run reuses them (the tarball comes out byte for byte the same), so a
provisioning script can run again safely. A new key is made only on the
first run or with ``reissue=True``; a revoked certificate is never bundled.
"""

from __future__ import annotations

import gzip
import io
import logging
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from roadsense.core.errors import ProvisioningError
from roadsense.provisioning.ca import CertificateAuthority, issued_certificates, write_private
from roadsense.provisioning.manifest import FleetManifest, edge_config_toml
from roadsense.provisioning.model_key import PUBLIC_FILE, model_public_key

logger = logging.getLogger(__name__)

SYSTEMD_UNIT = """\
[Unit]
Description=RoadSense edge agent ({device_id})
Wants=network-online.target
After=network-online.target

[Service]
User=roadsense
ExecStart=/usr/bin/env roadsense edge run --config {install_dir}/edge.toml
WorkingDirectory={install_dir}
Restart=always
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=30
NoNewPrivileges=true
ProtectSystem=strict
ReadWritePaths={install_dir}

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class BundleResult:
    """What ``make_bundle`` did."""

    device_id: str
    path: Path
    serial: str
    issued: bool
    """True when a new key and certificate were made in this run."""


def device_dir(fleet_dir: Path, device_id: str) -> Path:
    """Where a device's key and certificate are kept."""
    return fleet_dir / "devices" / device_id


def make_bundle(
    fleet_dir: Path,
    manifest: FleetManifest,
    device_id: str,
    open_ca: Callable[[], CertificateAuthority],
    *,
    out: Path | None = None,
    reissue: bool = False,
    days: int = 365,
) -> BundleResult:
    """Write ``<fleet>/bundles/<id>.tar.gz`` (or ``out``); issue a key only when needed."""
    device = manifest.device(device_id)
    folder = device_dir(fleet_dir, device.id)
    cert_file, key_file = folder / "device.pem", folder / "device.key"
    issued = False
    if reissue or not (cert_file.exists() and key_file.exists()):
        if not reissue and (cert_file.exists() or key_file.exists()):
            raise ProvisioningError(
                f"{folder}: only one of device.pem/device.key exists; refusing to guess "
                "(use --reissue to make a new key)"
            )
        open_ca().issue_files(device.id, "device", cert_file, key_file, days=days)
        issued = True
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    serial = format(cert.serial_number, "x")
    record = {i.serial: i for i in issued_certificates(fleet_dir)}.get(serial)
    if record is None:
        raise ProvisioningError(f"{cert_file}: serial {serial} is not in this CA's record")
    if record.revoked_at is not None:
        raise ProvisioningError(
            f"the certificate of {device.id} was revoked at {record.revoked_at}; "
            "use --reissue to make a new key"
        )
    install_dir = manifest.fleet.install_dir
    ca_file = CertificateAuthority.ca_dir(fleet_dir) / "ca.pem"
    model_key = model_public_key(fleet_dir)
    edge_toml = edge_config_toml(manifest, device.id, model_key=model_key is not None)
    members = [
        ("edge.toml", edge_toml.encode(), 0o644),
        ("ca.pem", ca_file.read_bytes(), 0o644),
        ("device.pem", cert_file.read_bytes(), 0o644),
        ("device.key", key_file.read_bytes(), 0o600),
        (
            "roadsense-edge.service",
            SYSTEMD_UNIT.format(device_id=device.id, install_dir=install_dir).encode(),
            0o644,
        ),
    ]
    if model_key is not None:  # what the device verifies published models with
        members.append((PUBLIC_FILE, model_key, 0o644))
    # Fixed times and owners: the same inputs give the same bytes.
    mtime = int(cert.not_valid_before_utc.timestamp())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(f"{device.id}/{name}")
            info.size, info.mode, info.mtime = len(data), mode, mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    target = out or fleet_dir / "bundles" / f"{device.id}.tar.gz"
    # The tarball holds the private key: 0600 like the key itself.
    write_private(target, gzip.compress(raw.getvalue(), mtime=0))
    logger.info(
        "bundle of %s written to %s (%s key)", device.id, target, "new" if issued else "existing"
    )
    return BundleResult(device.id, target, serial, issued)
