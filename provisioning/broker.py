"""The Mosquitto configuration of a fleet: mutual TLS, per-device ACL, the CRL.

Every client presents a certificate of the fleet CA; its CN becomes the MQTT
username (``use_identity_as_username``) *and* its client id
(``use_username_as_clientid``), so no certificate can take over another
client's connection or session: a device that asks for another's client id,
or the cloud's, gets its own. The ACL pattern ``%u`` confines a device to
writing its own telemetry and replies and to reading its own commands and
delivery confirmations. Each cloud account (its own certificate per ingest
worker or tool, CN ``roadsense-cloud`` or ``roadsense-cloud-<name>``) reads all
telemetry, writes commands and confirms deliveries. Mosquitto reads the CRL at
start and on SIGHUP (``systemctl reload mosquitto``): reload it after a
revocation. A revoked device's open connection survives the reload, so the
cloud also rejects its reports.

Started as root, Mosquitto drops to its own user (``user`` in the config)
before it reads the ACL, the TLS files and its persistence: the folder written
here is handed to that user, and every file is checked by reading it (and
writing the data folder) as that user, so a broker that could not start, or
could not save its state, fails here, loudly.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from roadsense.core.errors import ProvisioningError
from roadsense.core.mqtt import QUEUE_AND_LOG_SETTINGS
from roadsense.provisioning.ca import CertificateAuthority
from roadsense.provisioning.manifest import CLOUD_ACCOUNT, is_cloud_account

DEVICE_ACL = """\
# RoadSense broker ACL (written by `roadsense provision broker-config`).
# The username is the client certificate's CN: a device id, or a cloud account.
# A device writes only its own telemetry, stills and replies, and reads only its
# own commands and the cloud's delivery confirmations (which only the cloud writes).
pattern write roadsense/v1/%u/status
pattern write roadsense/v1/%u/health
pattern write roadsense/v1/%u/+/congestion
pattern write roadsense/v1/%u/+/snapshot
pattern write roadsense/v1/%u/reply/#
pattern read roadsense/v1/%u/cmd/#
pattern read roadsense/v1/%u/ack
"""

CLOUD_ACL = """
# Cloud account: reads all telemetry and replies, sends commands, confirms deliveries.
user {account}
topic read roadsense/v1/#
topic write roadsense/v1/+/cmd/#
topic write roadsense/v1/+/ack
"""

CONFIG = """\
# RoadSense Mosquitto configuration (written by `roadsense provision broker-config`).
per_listener_settings false
allow_anonymous false
acl_file {acl_file}
# Started as root, Mosquitto runs as this user; it owns the data folder.
user {user}

listener {port} {bind}
cafile {ca_file}
certfile {cert_file}
keyfile {key_file}
crlfile {crl_file}
require_certificate true
use_identity_as_username true
# The client id is the certificate's CN too: nobody can displace another's session.
use_username_as_clientid true
tls_version tlsv1.2

persistence true
persistence_location {data_dir}/
autosave_interval 60
{queue_and_log}{extra}"""

_PROBE = (
    'data=$1; shift; for f in "$@"; do head -c 0 -- "$f" 2>/dev/null '
    '|| { echo "$f: cannot read it"; exit 1; }; done; '
    'probe="$data/.roadsense-write-probe"; '
    '{ : > "$probe" && rm -f -- "$probe"; } 2>/dev/null '
    '|| { echo "$data: cannot write there"; exit 1; }'
)
"""Opens every file and writes the data folder; prints the first failure (POSIX sh)."""


@dataclass(frozen=True)
class BrokerFiles:
    """The files ``write_broker_config`` wrote."""

    config_file: Path
    acl_file: Path
    user: str


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int


def write_broker_config(
    fleet_dir: Path,
    out_dir: Path,
    *,
    port: int = 8883,
    bind: str = "0.0.0.0",
    data_dir: Path | None = None,
    server_name: str = "broker",
    cloud_accounts: Sequence[str] = (CLOUD_ACCOUNT,),
    broker_user: str | None = None,
    extra: str = "",
) -> BrokerFiles:
    """Write ``mosquitto.conf``, ``acl`` and ``tls/`` into ``out_dir`` for the broker's user.

    ``broker_user`` defaults to ``mosquitto`` when run as root (Mosquitto drops
    to it) and to the invoking user otherwise.
    """
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
    accounts = _check_cloud_accounts(cloud_accounts)
    account = _broker_account(broker_user)
    out_dir = out_dir.resolve()
    tls = out_dir / "tls"
    data = (data_dir or out_dir / "data").resolve()
    for folder in (out_dir, tls, data):
        folder.mkdir(parents=True, exist_ok=True)
    acl_file = out_dir / "acl"
    acl_file.write_text(
        DEVICE_ACL + "".join(CLOUD_ACL.format(account=a) for a in accounts), encoding="utf-8"
    )
    # The broker's own certificate and key travel with its config, readable by its user;
    # the CA certificate and the CRL stay where revocation rewrites them.
    cert_file, key_file = tls / "broker.pem", tls / "broker.key"
    shutil.copyfile(needed["broker certificate"], cert_file)
    shutil.copyfile(needed["broker key"], key_file)
    config_file = out_dir / "mosquitto.conf"
    config_file.write_text(
        CONFIG.format(
            acl_file=acl_file,
            user=account.name,
            port=port,
            bind=bind,
            ca_file=needed["CA certificate"],
            cert_file=cert_file,
            key_file=key_file,
            crl_file=needed["CRL"],
            data_dir=data,
            queue_and_log=QUEUE_AND_LOG_SETTINGS,
            extra=extra,
        ),
        encoding="utf-8",
    )
    _hand_over(account, out_dir, tls, data, [config_file, acl_file, cert_file, key_file])
    if os.geteuid() == 0:
        # Searchable, not listable: the broker reads the public CA certificate and CRL;
        # the CA key stays 0600 and encrypted.
        ca_dir.chmod(ca_dir.stat().st_mode | 0o111)
    _check_as(
        account, data, [acl_file, cert_file, key_file, needed["CA certificate"], needed["CRL"]]
    )
    return BrokerFiles(config_file, acl_file, account.name)


def _check_cloud_accounts(accounts: Sequence[str]) -> list[str]:
    if not accounts:
        raise ProvisioningError("the broker needs at least one cloud account")
    for name in accounts:
        if not is_cloud_account(name):
            raise ProvisioningError(
                f"cloud account {name!r}: must be {CLOUD_ACCOUNT!r} or {CLOUD_ACCOUNT}-<name> "
                "(letters, digits, '.', '_', '-')"
            )
    if len(set(accounts)) != len(accounts):
        raise ProvisioningError(f"cloud accounts repeat a name: {', '.join(accounts)}")
    return list(accounts)


def _broker_account(name: str | None) -> _Account:
    root = os.geteuid() == 0
    if name is None:
        name = "mosquitto" if root else pwd.getpwuid(os.geteuid()).pw_name
    try:
        entry = pwd.getpwnam(name)
    except KeyError as err:
        raise ProvisioningError(
            f"no user {name!r} on this machine for the broker to run as (installing "
            "Mosquitto's package creates 'mosquitto'; or pass --broker-user NAME)"
        ) from err
    if not root and entry.pw_uid != os.geteuid():
        raise ProvisioningError(
            f"only root can hand the broker's files to user {name!r}; run as root, or "
            "leave --broker-user out to run the broker as yourself"
        )
    return _Account(name, entry.pw_uid, entry.pw_gid)


def _hand_over(
    account: _Account, out_dir: Path, tls: Path, data: Path, files: Sequence[Path]
) -> None:
    """Folders and files readable by the broker's user, secrets by nobody else."""
    if os.geteuid() == 0 and account.uid != 0:
        for folder in (out_dir, tls):
            os.chown(folder, 0, account.gid)
            folder.chmod(0o750)
        for path in files:
            os.chown(path, 0, account.gid)
            path.chmod(0o640)
    else:
        for folder in (out_dir, tls):
            folder.chmod(0o700)
        for path in files:
            path.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(data, account.uid, account.gid)
    data.chmod(0o700)


def _check_as(account: _Account, data: Path, files: Sequence[Path]) -> None:
    """Read every file and write the data folder as the broker's user; fail with the reason."""
    as_other = os.geteuid() == 0 and account.uid != 0
    result = subprocess.run(
        ["/bin/sh", "-c", _PROBE, "probe", str(data), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        user=account.uid if as_other else None,
        group=account.gid if as_other else None,
        extra_groups=[] if as_other else None,
        cwd="/",
    )
    if result.returncode == 0:
        return
    problem = result.stdout.strip() or result.stderr.strip()
    blocked = _unsearchable_parent(account, Path(problem.split(":", 1)[0]))
    where = f"; {blocked} is not searchable by that user" if blocked else ""
    raise ProvisioningError(
        f"the broker runs as user {account.name!r}, and as that user {problem}{where}. "
        "Put the fleet and broker folders where that user can reach them (e.g. under "
        "/srv or /etc/mosquitto), or pass --broker-user"
    )


def _unsearchable_parent(account: _Account, path: Path) -> Path | None:
    groups = {account.gid} | {g.gr_gid for g in grp.getgrall() if account.name in g.gr_mem}
    for parent in reversed(path.parents):
        st = parent.stat()
        if account.uid == st.st_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid in groups:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return parent
    return None
