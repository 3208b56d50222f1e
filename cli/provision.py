"""``roadsense provision ...``: the fleet's CA, broker config, bundles, tokens, enrollment.

Every command is safe to re-run (nothing is overwritten silently), exits
non-zero on failure and, with ``--json``, prints one JSON object on stdout
(``{"ok": false, "error": ...}`` on failure) for provisioning scripts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadsense.core.errors import ConfigError, ProvisioningError, RoadSenseError

TOKEN_ENV = "ROADSENSE_ENROLLMENT_TOKEN"
Result = dict[str, Any]


def _emit(args: argparse.Namespace, result: Result, lines: list[str]) -> int:
    if args.json:
        print(json.dumps({"ok": True, **result}))
    else:
        for line in lines:
            print(line)
    return 0


def _json_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """In --json mode a failure is a JSON object on stdout too (and the same exit code)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except RoadSenseError as err:
            if not args.json:
                raise
            print(json.dumps({"ok": False, "error": str(err)}))
            return 2 if isinstance(err, ConfigError) else 1

    return run


def _open_ca(args: argparse.Namespace) -> Any:
    from roadsense.provisioning.ca import CertificateAuthority, read_passphrase

    return CertificateAuthority.open(args.dir, read_passphrase(args.passphrase_file))


def _init_ca(args: argparse.Namespace) -> int:
    from roadsense.provisioning.ca import CertificateAuthority, read_passphrase
    from roadsense.provisioning.model_key import create_model_key

    passphrase = read_passphrase(args.passphrase_file)
    ca = CertificateAuthority.create(args.dir, passphrase, name=args.name, days=args.days)
    public = create_model_key(args.dir, passphrase)
    return _emit(
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
    return _emit(
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
    cert = _open_ca(args).issue_files(
        args.name, kind, cert_file, key_file, days=args.days, hosts=getattr(args, "host", [])
    )
    serial = format(cert.serial_number, "x")
    return _emit(
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
    return _emit(
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
    return _emit(
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
    return _emit(args, {"manifest": str(args.out)}, [f"manifest written to {args.out}"])


def _bundle(args: argparse.Namespace) -> int:
    from roadsense.provisioning.bundle import make_bundle
    from roadsense.provisioning.manifest import load_manifest

    result = make_bundle(
        args.dir,
        load_manifest(args.manifest),
        args.device,
        lambda: _open_ca(args),
        out=args.out,
        reissue=args.reissue,
        days=args.days,
    )
    what = "new key and certificate" if result.issued else "existing key and certificate"
    return _emit(
        args,
        {"bundle": str(result.path), "serial": result.serial, "issued": result.issued},
        [f"bundle {result.path} ({what}, serial {result.serial})"],
    )


def _open_store(args: argparse.Namespace) -> Any:
    from roadsense.cloud.config import CloudConfig, StoreConfig
    from roadsense.cloud.stores import open_store

    if args.store is not None:
        return open_store(StoreConfig(path=args.store))
    from roadsense.core.config import load_config

    config = load_config(CloudConfig, args.cloud_config)
    return open_store(config.resolved(args.cloud_config.resolve().parent).store)


def _parse_duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: expected e.g. 900, 15m, 2h, 1d") from err


def _token(args: argparse.Namespace) -> int:
    from roadsense.cloud.enrollment import create_token
    from roadsense.core.timeutil import now_ms

    store = _open_store(args)
    try:
        now = now_ms()
        token = create_token(store, now, args.ttl, args.uses, args.device)
    finally:
        store.close()
    expires = datetime.datetime.fromtimestamp(now / 1000 + args.ttl, datetime.timezone.utc)
    if args.out is not None:
        from roadsense.provisioning.ca import write_private

        write_private(args.out, token.encode() + b"\n")
    return _emit(
        args,
        {
            "token": token,
            "device": args.device,
            "uses": args.uses,
            "expires": expires.isoformat(timespec="seconds"),
        },
        [
            f"enrollment token (shown once; the cloud keeps only its hash): {token}",
            f"for {args.device or 'any device of the manifest'}, {args.uses} use(s), "
            f"expires {expires.isoformat(timespec='seconds')}",
        ],
    )


def _enroll(args: argparse.Namespace) -> int:
    from roadsense.provisioning.enroll import enroll

    token = (
        args.token_file.read_text(encoding="utf-8").strip()
        if args.token_file
        else os.environ.get(TOKEN_ENV, "")
    )
    if not token:
        raise ProvisioningError(f"no enrollment token: give --token-file or set {TOKEN_ENV}")
    files = enroll(
        args.server, token, args.device, args.out, ca_file=args.ca_file, insecure=args.insecure
    )
    return _emit(
        args,
        {"device": args.device, "config": str(files.config_file), "cert": str(files.cert_file)},
        [f"enrolled {args.device}: run `roadsense edge run --config {files.config_file}`"],
    )


def _revoke(args: argparse.Namespace) -> int:
    ca = _open_ca(args)
    serials = ca.revoke(args.device, args.reason)
    issued = any(item.common_name == args.device for item in ca.issued())
    registry = False
    if args.store is not None or args.cloud_config is not None:
        from roadsense.cloud.enrollment import revoke_in_registry
        from roadsense.core.timeutil import now_ms

        store = _open_store(args)
        try:
            revoke_in_registry(store, args.device, args.reason, now_ms(), known=issued)
        finally:
            store.close()
        registry = True
    return _emit(
        args,
        {"device": args.device, "revoked_serials": serials, "registry": registry},
        [
            f"revoked {len(serials)} certificate(s) of {args.device}; CRL rewritten "
            "(reload Mosquitto, e.g. systemctl reload mosquitto, to apply it)"
        ]
        + ([] if registry else ["the cloud registry was not updated (give --cloud-config)"]),
    )


def _status(args: argparse.Namespace) -> int:
    from roadsense.provisioning.status import fleet_status

    rows = fleet_status(
        fleet_dir=args.dir,
        manifest_path=args.manifest,
        store=_open_store(args) if args.store or args.cloud_config else None,
    )
    lines = [f"{'device':<20} {'cert':<8} {'enrolled':<8} {'revoked':<7} {'online':<6} last seen"]
    for row in rows:
        lines.append(
            f"{row['device']:<20} {row['certificate']:<8} {_yn(row['enrolled']):<8} "
            f"{_yn(row['revoked']):<7} {_yn(row['online']):<6} {row['last_seen'] or '-'}"
        )
    return _emit(args, {"devices": rows}, lines)


def _yn(value: bool) -> str:
    return "yes" if value else "no"


def _fleet_args(parser: argparse.ArgumentParser, passphrase: bool = True) -> None:
    parser.add_argument(
        "--dir", type=Path, default=Path("."), help="fleet folder (CA, certificates; default .)"
    )
    if passphrase:
        parser.add_argument(
            "--passphrase-file",
            type=Path,
            help="file with the CA key's passphrase (default: env ROADSENSE_CA_PASSPHRASE)",
        )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _cloud_store_args(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--cloud-config", type=Path, help="cloud TOML configuration (its store)")
    group.add_argument("--store", type=Path, help="the cloud's SQLite store file")


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
        parser.set_defaults(handler=_json_errors(handler))
        return parser

    p = command(
        "init-ca",
        _init_ca,
        "create the fleet CA",
        "Create a CA in the fleet folder (ca/): its key encrypted with the passphrase, "
        "an empty CRL, the record of issued certificates and the model-signing key "
        "(encrypted with the same passphrase). Refuses to overwrite.",
    )
    _fleet_args(p)
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
    _fleet_args(p)

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
        _fleet_args(p)
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
    _fleet_args(p, passphrase=False)
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
    _fleet_args(p)
    p.add_argument("device", help="device id (in the manifest)")
    p.add_argument("--manifest", type=Path, required=True, help="fleet manifest (TOML)")
    p.add_argument("--out", type=Path, help="tarball path (default DIR/bundles/DEVICE.tar.gz)")
    p.add_argument("--reissue", action="store_true", help="make a new key and certificate")
    p.add_argument("--days", type=int, default=365, help="certificate validity in days")

    _add_device_commands(command)


def _add_device_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command(
        "token",
        _token,
        "make an enrollment token (stored hashed in the cloud)",
        "Create a short-lived, limited-use enrollment token in the cloud's store "
        "(only its SHA-256 is kept) and print it once.",
    )
    _cloud_store_args(p, required=True)
    p.add_argument("--device", help="bind the token to this device id (default: any in manifest)")
    p.add_argument(
        "--ttl",
        type=_parse_duration,
        default=900.0,
        help="lifetime, e.g. 900, 15m, 2h (default 15m)",
    )
    p.add_argument("--uses", type=int, default=1, help="how many enrollments (default 1)")
    p.add_argument("--out", type=Path, help="also write the token to this file (mode 0600)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command(
        "enroll",
        _enroll,
        "enroll this device by claim (device side)",
        "Make a key here (it never leaves), send a CSR with the enrollment token to "
        "FleetService.Enroll and write device.key (0600), device.pem, ca.pem and "
        "edge.toml into --out.",
    )
    p.add_argument("--server", required=True, help="cloud gRPC address host:port")
    p.add_argument("--device", required=True, help="this device's id")
    p.add_argument("--out", type=Path, required=True, help="folder for the key, certs, config")
    p.add_argument(
        "--token-file", type=Path, help=f"file with the token (default: env {TOKEN_ENV})"
    )
    p.add_argument("--ca-file", type=Path, help="fleet CA (PEM) to trust the gRPC server with")
    p.add_argument("--insecure", action="store_true", help="plaintext gRPC (loopback tests only)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command(
        "revoke",
        _revoke,
        "revoke a device's certificates",
        "Put every certificate of DEVICE on the CRL and, with --cloud-config/--store, "
        "mark it revoked in the cloud registry (ingest then rejects its reports). "
        "The RPC FleetService.RevokeDevice does both from a running cloud.",
    )
    _fleet_args(p)
    p.add_argument("device", help="device id")
    p.add_argument("--reason", default="", help="why (kept in the record)")
    _cloud_store_args(p, required=False)

    p = command(
        "status",
        _status,
        "show the fleet: certificates, enrollment, online, revoked",
        "One row per device from the manifest, the CA record and the cloud's store.",
    )
    _fleet_args(p, passphrase=False)
    p.add_argument("--manifest", type=Path, help="fleet manifest (TOML)")
    _cloud_store_args(p, required=False)
