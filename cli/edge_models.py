"""``roadsense edge models``: which models a device holds and which it starts on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _models(args: argparse.Namespace) -> int:
    from roadsense.core.config import load_config
    from roadsense.edge.config import EdgeConfig
    from roadsense.edge.updates.slots import DETECTOR_FOLDER
    from roadsense.edge.updates.state import describe
    from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR

    config = load_config(EdgeConfig, args.config).resolved(args.config.resolve().parent)
    report = describe(config.models.folder, config.classifier.model or DEFAULT_CNN)
    if config.measure.enabled:  # the detector's releases and state live below
        detector = config.measure.model or DEFAULT_DETECTOR
        report["detector"] = describe(config.models.folder / DETECTOR_FOLDER, detector)
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    _print(report)
    if "detector" in report:
        print("detector:")
        _print(report["detector"], "  ")
    return 0


def _print(report: dict[str, Any], indent: str = "") -> None:
    print(f"{indent}starts on: {report['start_model']}")
    for role in ("current", "previous"):
        held = report[role]
        if held is None:
            print(f"{indent}{role}: none")
        else:
            state = "complete" if held["complete"] else "MISSING OR DAMAGED"
            print(f"{indent}{role}: {held['version']} ({held['onnx']}, {state})")
    pending = report["pending"]
    if pending is None:
        print(f"{indent}pending update: none")
    else:
        print(
            f"{indent}pending update: {pending['request_id']!r} for model {pending['version']} "
            "(taken up at the next start)"
        )
    for version, size in report["partial_downloads"].items():
        print(f"{indent}partial download: {version}, {size} bytes held")


def add_edge_model_commands(edge_commands: Any) -> None:
    """`edge models`."""
    models = edge_commands.add_parser(
        "models",
        help="show the models a device holds, the one it starts on and any pending update",
        description="Read the [models] folder of an edge config (state.json, releases, "
        "partial downloads; a measuring device's detector in its detector/ folder) without "
        "starting the agent.",
    )
    models.add_argument("--config", type=Path, required=True, help="edge TOML configuration")
    models.add_argument("--json", action="store_true", help="print one JSON object")
    models.set_defaults(handler=_models)
