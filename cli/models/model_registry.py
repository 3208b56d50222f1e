"""``roadsense models publish`` and ``models list``: the cloud's registry of signed models."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

from roadsense.core.errors import ProvisioningError
from roadsense.proto.model_kinds import CONGESTION, DETECTOR, MODEL_KINDS


def _config(args: argparse.Namespace) -> Any:
    from roadsense.cloud.config import CloudConfig
    from roadsense.core.config import load_config

    config = load_config(CloudConfig, args.cloud_config)
    return config.resolved(args.cloud_config.resolve().parent)


def _release_json(model: Any) -> dict[str, Any]:
    return {
        "version": model.version,
        "kind": model.kind,
        "name": model.name,
        "onnx_file": model.onnx_file,
        "size": model.size,
        "sha256": model.sha256,
        "card_sha256": model.card_sha256,
        "signature": model.signature.hex(),
        "published_ms": model.published_ms,
        "published_by": model.published_by,
    }


def _when(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


def _publish(args: argparse.Namespace) -> int:
    from roadsense.cloud.releases.registry import publish_model, publisher_name
    from roadsense.cloud.store.open import open_store
    from roadsense.core.timeutil import now_ms
    from roadsense.provisioning.ca import read_passphrase
    from roadsense.provisioning.model_key import open_model_key

    config = _config(args)
    enrollment = config.enrollment
    fleet_dir = args.dir or (enrollment.fleet_dir if enrollment else None)
    if fleet_dir is None:
        raise ProvisioningError(
            "give --dir (the fleet folder with the model-signing key); the cloud config "
            "has no [enrollment] fleet_dir to take it from"
        )
    passphrase_file = args.passphrase_file or (enrollment.passphrase_file if enrollment else None)
    key = open_model_key(fleet_dir, read_passphrase(passphrase_file))
    store = open_store(config.store)
    try:
        model = publish_model(
            store,
            config.models.registry_dir,
            args.model,
            args.version,
            key,
            now_ms=now_ms(),
            published_by=publisher_name(),
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps({"ok": True, **_release_json(model)}))
    else:
        print(
            f"published {model.name} {model.version} ({model.kind}): {model.size} bytes, "
            f"sha256 {model.sha256[:12]}…, signed; in {config.models.registry_dir}"
        )
    return 0


def _list(args: argparse.Namespace) -> int:
    from roadsense.cloud.store.open import open_store

    config = _config(args)
    store = open_store(config.store)
    try:
        models = store.models()
    finally:
        store.close()
    if args.json:
        print(json.dumps({"models": [_release_json(m) for m in models]}))
        return 0
    if not models:
        print("no models published")
        return 0
    print(
        f"{'version':<24} {'kind':<10} {'name':<20} {'bytes':>10} {'sha256':<13} "
        f"{'published':<26} by"
    )
    for m in models:
        print(
            f"{m.version:<24} {m.kind:<10} {m.name:<20} {m.size:>10} {m.sha256[:12]:<13} "
            f"{_when(m.published_ms):<26} {m.published_by}"
        )
    return 0


def add_registry_commands(models_commands: Any) -> None:
    """`models publish` and `models list`."""
    publish = models_commands.add_parser(
        "publish",
        help="store an ONNX and its card in the cloud's registry, signed with the fleet key",
        description="Copy MODEL and its card into the registry folder of the cloud config "
        "([models] registry_dir) under VERSION, and record its sha256, size and card sha256 "
        "with the fleet's model-signing signature in the cloud's store. The model is a "
        f"{CONGESTION} classifier, or a vehicle detector when its card says "
        f'"kind": "{DETECTOR}"; the card must match the ONNX and name VERSION; a version is '
        "published once.",
    )
    publish.add_argument(
        "model",
        type=Path,
        help="ONNX file (classifier or detector), its card (.card.json) beside it",
    )
    publish.add_argument("--version", required=True, help="release version (the card's)")
    publish.add_argument(
        "--cloud-config", type=Path, required=True, help="cloud TOML configuration"
    )
    publish.add_argument(
        "--dir",
        type=Path,
        help="fleet folder with the model-signing key (default: [enrollment] fleet_dir)",
    )
    publish.add_argument(
        "--passphrase-file",
        type=Path,
        help="file with the fleet passphrase (default: [enrollment] passphrase_file, then "
        "env ROADSENSE_CA_PASSPHRASE)",
    )
    publish.add_argument("--json", action="store_true", help="print one JSON object")
    publish.set_defaults(handler=_publish)

    listing = models_commands.add_parser(
        "list",
        help="show the models published in the cloud's registry",
        description=f"One row per published release: version, kind ({' or '.join(MODEL_KINDS)}), "
        "name, size, sha256, when and by whom it was published.",
    )
    listing.add_argument(
        "--cloud-config", type=Path, required=True, help="cloud TOML configuration"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(handler=_list)
