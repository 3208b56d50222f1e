"""The Mosquitto configuration of a fleet: mutual TLS, per-device ACL, the CRL.

Every client presents a certificate of the fleet CA; its CN becomes the MQTT
username (``use_identity_as_username``), so the ACL pattern ``%u`` confines a
device to ``roadsense/v1/<its id>/`` for writing and to its own ``cmd/``
subtree for reading. The cloud ingest account (its own certificate, CN
``roadsense-cloud``) reads all telemetry and writes commands. Mosquitto reads
the CRL at start and on SIGHUP (``systemctl reload mosquitto``): reload it
after a revocation. A revoked device's open connection survives the reload,
so the cloud also rejects its reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from roadsense.cli.broker import QUEUE_AND_LOG_SETTINGS
from roadsense.core.errors import ProvisioningError
from roadsense.provisioning.ca import CertificateAuthority
from roadsense.provisioning.manifest import CLOUD_ACCOUNT

ACL = f"""\
# RoadSense broker ACL (written by `roadsense provision broker-config`).
# The username is the client certificate's CN: a device id, or the cloud account.
# A device writes only under its own subtree and reads only its own commands.
pattern write roadsense/v1/%u/#
pattern read roadsense/v1/%u/cmd/#

# The cloud ingest reads all telemetry and replies, and sends commands.
user {CLOUD_ACCOUNT}
topic read roadsense/v1/#
topic write roadsense/v1/+/cmd/#
"""

CONFIG = """\
# RoadSense Mosquitto configuration (written by `roadsense provision broker-config`).
per_listener_settings false
allow_anonymous false
acl_file {acl_file}

listener {port} {bind}
cafile {ca_file}
certfile {cert_file}
keyfile {key_file}
crlfile {crl_file}
require_certificate true
use_identity_as_username true
tls_version tlsv1.2

persistence true
persistence_location {data_dir}/
autosave_interval 60
{queue_and_log}{extra}"""


@dataclass(frozen=True)
class BrokerFiles:
    """The files ``write_broker_config`` wrote."""

    config_file: Path
    acl_file: Path


def write_broker_config(
    fleet_dir: Path,
    out_dir: Path,
    *,
    port: int = 8883,
    bind: str = "0.0.0.0",
    data_dir: Path | None = None,
    server_name: str = "broker",
    extra: str = "",
) -> BrokerFiles:
    """Write ``mosquitto.conf`` and ``acl`` into ``out_dir`` (absolute paths inside)."""
    fleet_dir = fleet_dir.resolve()
    ca_dir = CertificateAuthority.ca_dir(fleet_dir)
    server = fleet_dir / "servers"
    needed = {
        "CA certificate": ca_dir / "ca.pem",
        "CRL": ca_dir / "crl.pem",
        "broker certificate": server / f"{server_name}.pem",
        "broker key": server / f"{server_name}.key",
    }
    for what, path in needed.items():
        if not path.exists():
            hint = (
                f"run `roadsense provision server-cert {server_name} --host HOST`"
                if "broker" in what
                else "run `roadsense provision init-ca`"
            )
            raise ProvisioningError(f"{path}: no {what} ({hint})")
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    acl_file = out_dir / "acl"
    acl_file.write_text(ACL, encoding="utf-8")
    data = (data_dir or out_dir / "data").resolve()
    data.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "mosquitto.conf"
    config_file.write_text(
        CONFIG.format(
            acl_file=acl_file,
            port=port,
            bind=bind,
            ca_file=needed["CA certificate"],
            cert_file=needed["broker certificate"],
            key_file=needed["broker key"],
            crl_file=needed["CRL"],
            data_dir=data,
            queue_and_log=QUEUE_AND_LOG_SETTINGS,
            extra=extra,
        ),
        encoding="utf-8",
    )
    return BrokerFiles(config_file, acl_file)
