"""What the ``provision`` commands share: the fleet-folder arguments, the CA, and one JSON
object on stdout with ``--json`` (``{"ok": false, "error": ...}`` on failure)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadsense.core.errors import ConfigError, RoadSenseError

TOKEN_ENV = "ROADSENSE_ENROLLMENT_TOKEN"
Result = dict[str, Any]


def emit(args: argparse.Namespace, result: Result, lines: list[str]) -> int:
    if args.json:
        print(json.dumps({"ok": True, **result}))
    else:
        for line in lines:
            print(line)
    return 0


def json_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
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


def open_ca(args: argparse.Namespace) -> Any:
    from roadsense.provisioning.ca import CertificateAuthority, read_passphrase

    return CertificateAuthority.open(args.dir, read_passphrase(args.passphrase_file))


def fleet_args(parser: argparse.ArgumentParser, passphrase: bool = True) -> None:
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


def cloud_store_args(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--cloud-config", type=Path, help="cloud TOML configuration (its store)")
    group.add_argument("--store", type=Path, help="the cloud's SQLite store file")
