"""``roadsense provision token|enroll|revoke|status``: enrollment by claim and the registry.

A token is made in the cloud's store (its hash only), a device enrolls with it over
FleetService.Enroll, a revocation goes on the CRL and into the cloud's registry, and the
status joins the manifest, the CA record and the store.
"""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadsense.cli.provision_args import TOKEN_ENV, cloud_store_args, emit, fleet_args, open_ca
from roadsense.core.errors import ProvisioningError


def _open_store(args: argparse.Namespace) -> Any:
    from roadsense.cloud.config import CloudConfig, StoreConfig
    from roadsense.cloud.store.open import open_store

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
    from roadsense.cloud.fleet.enrollment import create_token
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
    return emit(
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
    return emit(
        args,
        {"device": args.device, "config": str(files.config_file), "cert": str(files.cert_file)},
        [f"enrolled {args.device}: run `roadsense edge run --config {files.config_file}`"],
    )


def _revoke(args: argparse.Namespace) -> int:
    ca = open_ca(args)
    serials = ca.revoke(args.device, args.reason)
    issued = any(item.common_name == args.device for item in ca.issued())
    registry = False
    if args.store is not None or args.cloud_config is not None:
        from roadsense.cloud.fleet.enrollment import revoke_in_registry
        from roadsense.core.timeutil import now_ms

        store = _open_store(args)
        try:
            revoke_in_registry(store, args.device, args.reason, now_ms(), known=issued)
        finally:
            store.close()
        registry = True
    return emit(
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
    return emit(args, {"devices": rows}, lines)


def _yn(value: bool) -> str:
    return "yes" if value else "no"


def add_enrollment_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """The enrollment commands, added through the ``provision`` tree's ``command``."""
    p = command(
        "token",
        _token,
        "make an enrollment token (stored hashed in the cloud)",
        "Create a short-lived, limited-use enrollment token in the cloud's store "
        "(only its SHA-256 is kept) and print it once.",
    )
    cloud_store_args(p, required=True)
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
    fleet_args(p)
    p.add_argument("device", help="device id")
    p.add_argument("--reason", default="", help="why (kept in the record)")
    cloud_store_args(p, required=False)

    p = command(
        "status",
        _status,
        "show the fleet: certificates, enrollment, online, revoked",
        "One row per device from the manifest, the CA record and the cloud's store.",
    )
    fleet_args(p, passphrase=False)
    p.add_argument("--manifest", type=Path, help="fleet manifest (TOML)")
    cloud_store_args(p, required=False)
