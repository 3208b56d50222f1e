"""``roadsense provision ...``: the fleet's CA, broker config, bundles, tokens, enrollment.

Every command is safe to re-run (nothing is overwritten silently), exits
non-zero on failure and, with ``--json``, prints one JSON object on stdout
(``{"ok": false, "error": ...}`` on failure) for provisioning scripts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadsense.cli.enrollment import add_enrollment_commands
from roadsense.cli.provision_args import emit, fleet_args, json_errors, open_ca
from roadsense.core.errors import ProvisioningError


def _init_ca(args: argparse.Namespace) -> int:
    from roadsense.provisioning.ca import CertificateAuthority, read_passphrase
    from roadsense.provisioning.model_key import create_model_key

    passphrase = read_passphrase(args.passphrase_file)
    ca = CertificateAuthority.create(args.dir, passphrase, name=args.name, days=args.days)
    public = create_model_key(args.dir, passphrase)
    return emit(
        args,
        {"ca_file": str(ca.cert_file), "crl_file": str(ca.crl_file), "model_key": str(public)},
        [
            f"CA created: {ca.cert_file} (key encrypted), CRL {ca.crl_file}",
            f"model-signing key created: {public} (private key encrypted beside it)",
        ],
    )


def _init_model_key(args: argparse.Namespace) -> int:
    from roadsense.provisioning.ca import CertificateAuthority, read_passphrase
    from roadsense.provisioning.model_key import create_model_key

    passphrase = read_passphrase(args.passphrase_file)
    CertificateAuthority.open(args.dir, passphrase)  # the fleet's passphrase, not a new one
    public = create_model_key(args.dir, passphrase)
    return emit(
        args,
        {"model_key": str(public)},
        [f"model-signing key created: {public} (private key encrypted beside it)"],
    )


def _issue_named(args: argparse.Namespace, kind: str) -> int:
    cert_file = args.dir / "servers" / f"{args.name}.pem"
    key_file = cert_file.with_suffix(".key")
    if (cert_file.exists() or key_file.exists()) and not args.reissue:
        raise ProvisioningError(
            f"{cert_file} already exists; use --reissue to make a new key and certificate"
        )
    cert = open_ca(args).issue_files(
        args.name, kind, cert_file, key_file, days=args.days, hosts=getattr(args, "host", [])
    )
    serial = format(cert.serial_number, "x")
    return emit(
        args,
        {"cert_file": str(cert_file), "key_file": str(key_file), "serial": serial},
        [f"{kind} certificate {args.name}: {cert_file}, key {key_file} (serial {serial})"],
    )


def _server_cert(args: argparse.Namespace) -> int:
    if not args.host:
        raise ProvisioningError("a server certificate needs at least one --host (DNS name or IP)")
    return _issue_named(args, "server")


def _client_cert(args: argparse.Namespace) -> int:
    return _issue_named(args, "client")


def _broker_config(args: argparse.Namespace) -> int:
    from roadsense.provisioning.broker import write_broker_config
    from roadsense.provisioning.manifest import CLOUD_ACCOUNT

    files = write_broker_config(
        args.dir,
        args.out,
        port=args.port,
        bind=args.bind,
        data_dir=args.data_dir,
        cloud_accounts=args.cloud_account or [CLOUD_ACCOUNT],
        broker_user=args.broker_user,
    )
    return emit(
        args,
        {
            "config_file": str(files.config_file),
            "acl_file": str(files.acl_file),
            "user": files.user,
        },
        [
            f"Mosquitto config {files.config_file}, ACL {files.acl_file} "
            f"(the broker runs as {files.user!r})",
            f"run: mosquitto -c {files.config_file}",
        ],
    )


def _check_manifest(args: argparse.Namespace) -> int:
    from roadsense.provisioning.manifest import load_manifest

    manifest = load_manifest(args.manifest)
    cameras = sum(len(d.cameras) for d in manifest.devices)
    return emit(
        args,
        {"devices": [d.id for d in manifest.devices], "cameras": cameras},
        [f"{args.manifest}: {len(manifest.devices)} devices, {cameras} cameras: ok"],
    )


def _import_csv(args: argparse.Namespace) -> int:
    from roadsense.provisioning.manifest import manifest_from_csv

    if args.out.exists():
        raise ProvisioningError(f"{args.out} already exists; refusing to overwrite it")
    text = manifest_from_csv(args.csv, args.city, args.broker_host, args.broker_port)
    args.out.write_text(text, encoding="utf-8")
    return emit(args, {"manifest": str(args.out)}, [f"manifest written to {args.out}"])


def _bundle(args: argparse.Namespace) -> int:
    from roadsense.provisioning.bundle import make_bundle
    from roadsense.provisioning.manifest import load_manifest

    result = make_bundle(
        args.dir,
        load_manifest(args.manifest),
        args.device,
        lambda: open_ca(args),
        out=args.out,
        reissue=args.reissue,
        days=args.days,
    )
    what = "new key and certificate" if result.issued else "existing key and certificate"
    return emit(
        args,
        {"bundle": str(result.path), "serial": result.serial, "issued": result.issued},
        [f"bundle {result.path} ({what}, serial {result.serial})"],
    )


def add_provision_commands(commands: Any) -> None:
    """The ``provision`` command tree."""
    provision = commands.add_parser(
        "provision",
        help="fleet identity: CA, broker config, bundles, enrollment",
        description="Provision a fleet: a CA, server and device certificates, the Mosquitto "
        "mTLS config and ACL, device bundles, enrollment tokens, revocation, status.",
    )
    sub = provision.add_subparsers(dest="provision_command", metavar="COMMAND", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], summary: str, description: str
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=summary, description=description
        )
        parser.set_defaults(handler=json_errors(handler))
        return parser

    p = command(
        "init-ca",
        _init_ca,
        "create the fleet CA",
        "Create a CA in the fleet folder (ca/): its key encrypted with the passphrase, "
        "an empty CRL, the record of issued certificates and the model-signing key "
        "(encrypted with the same passphrase). Refuses to overwrite.",
    )
    fleet_args(p)
    p.add_argument("--name", default="RoadSense fleet CA", help="the CA's common name")
    p.add_argument("--days", type=int, default=3650, help="CA validity in days (default 3650)")

    p = command(
        "init-model-key",
        _init_model_key,
        "create the fleet's model-signing key (fleets made before it existed)",
        "Create the Ed25519 key that signs published models (ca/model-signing.key, "
        "encrypted with the CA passphrase; ca/model-signing.pub for devices). init-ca "
        "makes one for new fleets. Refuses to overwrite.",
    )
    fleet_args(p)

    for name, handler, kind in (
        ("server-cert", _server_cert, "server"),
        ("client-cert", _client_cert, "client"),
    ):
        p = command(
            name,
            handler,
            f"issue a {kind} certificate (servers/NAME.pem/.key)",
            "Issue a certificate signed by the fleet CA into servers/NAME.pem with its "
            "key (mode 0600). "
            + (
                "For the broker ('broker') and the cloud gRPC endpoint ('cloud-grpc'); "
                "--host names go into the subject alternative names."
                if kind == "server"
                else "For the cloud ingest's MQTT account ('roadsense-cloud') or an operator."
            ),
        )
        fleet_args(p)
        p.add_argument("name", help="certificate CN (file name under servers/)")
        if kind == "server":
            p.add_argument(
                "--host",
                action="append",
                default=[],
                help="DNS name or IP address clients connect to (repeatable)",
            )
        p.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
        p.add_argument("--reissue", action="store_true", help="replace an existing key and cert")

    _add_cloud_commands(command)


def _add_cloud_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "broker-config",
        _broker_config,
        "write the Mosquitto mTLS config and ACL",
        "Write mosquitto.conf (mTLS listener, require_certificate, "
        "use_identity_as_username, use_username_as_clientid, crlfile), its ACL and the "
        "broker's certificate and key: a device writes only its own telemetry and reads "
        "only its commands and delivery confirmations; each cloud account reads all "
        "telemetry, writes commands and confirms deliveries. The files are handed to the "
        "user the broker runs as and checked by reading them as that user.",
    )
    fleet_args(p, passphrase=False)
    p.add_argument("--out", type=Path, default=Path("broker"), help="output folder")
    p.add_argument("--port", type=int, default=8883, help="listener port (default 8883)")
    p.add_argument("--bind", default="0.0.0.0", help="listener address (default 0.0.0.0)")
    p.add_argument("--data-dir", type=Path, help="persistence folder (default OUT/data)")
    p.add_argument(
        "--cloud-account",
        action="append",
        metavar="CN",
        help="a cloud account the ACL lets read telemetry and write commands and "
        "confirmations (roadsense-cloud or roadsense-cloud-NAME; repeat it for every ingest "
        "worker and tool, each with its own client certificate; default roadsense-cloud)",
    )
    p.add_argument(
        "--broker-user",
        help="user the broker runs as and that gets its files (default: mosquitto when run "
        "as root, which Mosquitto drops to; else yourself)",
    )

    p = command(
        "check-manifest",
        _check_manifest,
        "validate a fleet manifest",
        "Validate a fleet manifest: duplicate ids, unknown segments, bad camera URLs.",
    )
    p.add_argument("manifest", type=Path, help="fleet manifest (TOML)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command(
        "import-csv",
        _import_csv,
        "make a fleet manifest from a CSV",
        "Turn a CSV with one row per camera (device_id, site, lat, lon, hardware, "
        "camera_id, source, segment_id, direction, roi) into a validated manifest.",
    )
    p.add_argument("csv", type=Path, help="CSV file, one row per camera")
    p.add_argument("--out", type=Path, required=True, help="manifest to write (must not exist)")
    p.add_argument("--city", required=True, help="city (deployment) name")
    p.add_argument("--broker-host", required=True, help="broker host name devices use")
    p.add_argument("--broker-port", type=int, default=8883, help="broker mTLS port")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command(
        "bundle",
        _bundle,
        "write a device's tarball (config, cert, key, CA, unit)",
        "Write bundles/DEVICE.tar.gz: edge.toml from the manifest, device "
        "certificate and key (0600), CA, systemd unit. Re-running reuses the key and "
        "certificate (same bytes); --reissue makes a new key.",
    )
    fleet_args(p)
    p.add_argument("device", help="device id (in the manifest)")
    p.add_argument("--manifest", type=Path, required=True, help="fleet manifest (TOML)")
    p.add_argument("--out", type=Path, help="tarball path (default DIR/bundles/DEVICE.tar.gz)")
    p.add_argument("--reissue", action="store_true", help="make a new key and certificate")
    p.add_argument("--days", type=int, default=365, help="certificate validity in days")

    add_enrollment_commands(command)
