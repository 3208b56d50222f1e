"""The one command-line entry point: ``roadsense <command> ...``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from roadsense.cli.bench import add_bench_commands
from roadsense.cli.edge_models import add_edge_model_commands
from roadsense.cli.measure import add_measure_command
from roadsense.cli.models.congestion import (
    add_congestion_training,
    add_dataset_commands,
    add_models_commands,
)
from roadsense.cli.models.detector_training import add_detector_training
from roadsense.cli.models.forecast import add_forecast_commands, add_forecaster_training
from roadsense.cli.output import print_figures
from roadsense.cli.provision import add_provision_commands
from roadsense.cli.rollout import add_fleet_commands
from roadsense.core import __version__
from roadsense.core.errors import ConfigError, RoadSenseError
from roadsense.core.logs import configure_logging

logger = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]


def _edge_run(args: argparse.Namespace) -> int:
    from roadsense.core.config import load_config
    from roadsense.edge.config import EdgeConfig
    from roadsense.edge.runner import run

    config = load_config(EdgeConfig, args.config).resolved(args.config.resolve().parent)
    run(config)
    return 0


def _cloud_serve(args: argparse.Namespace) -> int:
    from roadsense.cloud.app import serve
    from roadsense.cloud.config import CloudConfig
    from roadsense.core.config import load_config

    config = load_config(CloudConfig, args.config).resolved(args.config.resolve().parent)
    serve(config, args.role)
    return 0


def _cloud_check(args: argparse.Namespace) -> int:
    from roadsense.cloud.config import CloudConfig
    from roadsense.cloud.tools.check import check
    from roadsense.core.config import load_config

    config = load_config(CloudConfig, args.config).resolved(args.config.resolve().parent)
    report = check(config)
    if args.json:
        print(json.dumps({"ok": report.ok, "problems": report.problems, **report.facts}))
    else:
        for key, value in report.facts.items():
            print(f"{key}: {value}")
        for problem in report.problems:
            print(f"problem: {problem}")
        print("ok" if report.ok else f"{len(report.problems)} problem(s)")
    return 0 if report.ok else 1


def _utc_ms(text: str, option: str) -> int:
    """An ISO 8601 time (UTC when it names no zone) in ms since 1970."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise ConfigError(f"{option} {text!r} is not an ISO 8601 time (2026-12-07T08:00)") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _cloud_bins(args: argparse.Namespace) -> int:
    from roadsense.cloud.config import CloudConfig
    from roadsense.cloud.store.open import open_store
    from roadsense.cloud.tools.bins import write_bins
    from roadsense.core.config import load_config

    config = load_config(CloudConfig, args.config).resolved(args.config.resolve().parent)
    start, end = _utc_ms(args.start, "--from"), _utc_ms(args.end, "--to")
    store = open_store(config.store, int(config.state.history_interval_s * 1000))
    try:
        city = {s.id: s for s in config.segments}
        with contextlib.ExitStack() as files:
            out = sys.stdout
            if args.out is not None:
                out = files.enter_context(args.out.open("w", encoding="utf-8", newline=""))
            rows = write_bins(
                store, city, segment_id=args.segment, from_ms=start, to_ms=end,
                bin_minutes=args.bin, out=out,
            )  # fmt: skip
        if args.out is not None:
            print(f"{rows} bins of {args.bin} min written to {args.out}")
    finally:
        store.close()
    return 0


def _cloud_snapshot(args: argparse.Namespace) -> int:
    from roadsense.cloud.config import CloudConfig
    from roadsense.cloud.fleet.snapshots import request_snapshot
    from roadsense.cloud.tools.snapshot import (
        tool_account,
        write_explained,
        write_measured,
        write_snapshot,
    )
    from roadsense.core.config import load_config

    config = load_config(CloudConfig, args.config).resolved(args.config.resolve().parent)
    still = request_snapshot(
        tool_account(config.mqtt, args.cert_file, args.key_file),
        args.device,
        args.camera,
        username=config.ingest.username,
        max_width=args.max_width,
        timeout_s=args.timeout,
    )
    roi = write_snapshot(still, args.out, draw_roi=args.draw_roi)
    explained: dict[str, object] = {}
    if args.measure:
        if config.classify.detector is None:
            raise ConfigError("--measure needs [classify] detector (the vehicle detector)")
        explained = write_measured(still, args.out, config.classify.detector)
    elif args.explain:
        explained = write_explained(still, args.out, config.classify.model)
    facts = {
        "image": str(args.out),
        "width": still.width,
        "height": still.height,
        "bytes": len(still.jpeg),
        "capture_time_ms": still.capture_time_ms,
        "roi": list(roi) if roi else None,
        "blurred_regions": still.blurred_regions,
        **explained,
    }
    return print_figures(facts, args.json)


def _cloud_token(args: argparse.Namespace) -> int:
    from roadsense.cloud.api.auth import new_token

    token, digest = new_token()
    print(f"token (give it to the client; it is not stored anywhere): {token}")
    print("add to the cloud configuration:")
    print(f'[[grpc.auth.tokens]]\nname = "{args.name}"\nrole = "{args.role}"\nsha256 = "{digest}"')
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from roadsense.cli.demo import print_result, run_demo

    # In --json mode the last stdout line is the JSON object; the rest goes to stderr.
    console = Console(stderr=args.json)
    result = run_demo(args.duration, args.agents, args.json, args.broker, console)
    print_result(result, args.json, console)
    ok = result["grpc_ok"] and result["reports_ingested"] == result["reports_published"] > 0
    return 0 if ok else 1


def _add_train_commands(commands: Any) -> None:
    train = commands.add_parser("train", help="train models", description="Model training.")
    train_commands = train.add_subparsers(dest="train_command", metavar="COMMAND", required=True)
    add_forecaster_training(train_commands)
    add_congestion_training(train_commands)
    add_detector_training(train_commands)


def _add_bins_command(cloud_commands: Any) -> None:
    bins = cloud_commands.add_parser(
        "bins",
        help="a segment's measured counts per 5 or 15 minutes, as CSV",
        description="Per bin: vehicles in view, stopped, occupancy, and per vehicle class "
        "the vehicles in view and line crossings, added up over the segment's cameras.",
    )
    bins.add_argument("--config", type=Path, required=True, help="cloud TOML configuration")
    bins.add_argument("--segment", required=True, help="segment id")
    bins.add_argument("--from", dest="start", required=True, help="first time (ISO 8601, UTC)")
    bins.add_argument("--to", dest="end", required=True, help="end time, excluded (ISO 8601)")
    bins.add_argument("--bin", type=int, default=15, choices=[5, 15], help="minutes per bin")
    bins.add_argument("--out", type=Path, help="CSV file to write (default: standard output)")
    bins.set_defaults(handler=_cloud_bins)


def build_parser() -> argparse.ArgumentParser:
    """The full command tree (tests walk it to check every command has help)."""
    parser = argparse.ArgumentParser(
        prog="roadsense",
        description="RoadSense: edge-to-cloud city traffic. Roadside agents classify "
        "congestion from cameras and publish over MQTT; the cloud keeps the city's state "
        "and serves it over gRPC.",
    )
    parser.add_argument("--version", action="version", version=f"roadsense {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text for people, json (one object per line) for log collectors",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    edge = commands.add_parser("edge", help="run the roadside agent", description="Roadside agent.")
    edge_commands = edge.add_subparsers(dest="edge_command", metavar="COMMAND", required=True)
    edge_run = edge_commands.add_parser(
        "run",
        help="capture, classify and publish until SIGTERM",
        description="Run the edge agent: cameras → CNN → durable outbox → MQTT.",
    )
    edge_run.add_argument("--config", type=Path, required=True, help="edge TOML configuration")
    edge_run.set_defaults(handler=_edge_run)
    add_edge_model_commands(edge_commands)

    cloud = commands.add_parser("cloud", help="run the cloud service", description="Cloud service.")
    cloud_commands = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND", required=True)
    serve = cloud_commands.add_parser(
        "serve",
        help="ingest telemetry and serve the gRPC API until SIGTERM",
        description="Run the cloud service: MQTT ingest → SQLite store → gRPC API.",
    )
    serve.add_argument("--config", type=Path, required=True, help="cloud TOML configuration")
    serve.add_argument(
        "--role",
        choices=["ingest", "api", "forecast", "all"],
        default="all",
        help="what this process runs: ingest (MQTT to the store), api (gRPC and dashboard "
        "from the store), forecast (the job, on the one process holding the forecast lock) "
        "or all of them (default)",
    )
    serve.set_defaults(handler=_cloud_serve)
    check = cloud_commands.add_parser(
        "check",
        help="validate a configuration and its database without starting",
        description="Check the configuration, the files it names and the store (integrity, "
        "migrations); exit 1 on a problem.",
    )
    check.add_argument("--config", type=Path, required=True, help="cloud TOML configuration")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(handler=_cloud_check)
    _add_bins_command(cloud_commands)
    token = cloud_commands.add_parser(
        "token",
        help="make a client token for the gRPC API",
        description="Print a new random token and the configuration lines (its SHA-256 and "
        "role) that let the cloud accept it.",
    )
    token.add_argument("--name", required=True, help="who will hold the token")
    token.add_argument(
        "--role", choices=["reader", "feed", "admin"], required=True, help="what it may do"
    )
    token.set_defaults(handler=_cloud_token)
    snapshot = cloud_commands.add_parser(
        "snapshot",
        help="ask a device for a still of one camera (privacy regions pixelated)",
        description="Send the 'snapshot' command over the cloud's broker account (the "
        "[mqtt] section of --config) and write the JPEG the device returns. Devices answer "
        "only with [privacy] allow_snapshots = true; they pixelate each camera's blur "
        "regions first.",
    )
    snapshot.add_argument("--config", type=Path, required=True, help="cloud TOML configuration")
    snapshot.add_argument("--device", required=True, help="device id")
    snapshot.add_argument("--camera", required=True, help="camera id on that device")
    snapshot.add_argument("--out", type=Path, required=True, help="image file to write")
    snapshot.add_argument("--max-width", type=int, help="widest image wanted, in pixels")
    snapshot.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to wait for the device (default 15)"
    )
    snapshot.add_argument(
        "--draw-roi",
        action="store_true",
        help="draw the camera's region of interest on the image (re-encoded by --out's suffix)",
    )
    snapshot.add_argument(
        "--measure",
        action="store_true",
        help="measure the still with [classify] detector and draw the evidence: each vehicle "
        "boxed, the camera's region outlined, the count and occupancy written on it",
    )
    snapshot.add_argument(
        "--explain",
        action="store_true",
        help="classify the camera's region of interest with [classify] model and draw the "
        "heat map of where the model looked over the image (re-encoded by --out's suffix)",
    )
    snapshot.add_argument(
        "--cert-file",
        type=Path,
        help="client certificate of the tool's own broker account (needed when the cloud "
        "connects with a certificate: the broker binds a client id to it)",
    )
    snapshot.add_argument("--key-file", type=Path, help="private key of --cert-file")
    snapshot.add_argument("--json", action="store_true", help="print one JSON object")
    snapshot.set_defaults(handler=_cloud_snapshot)

    demo = commands.add_parser(
        "demo",
        help="run broker, cloud and edge agents together on one machine",
        description="Run the whole flow locally on the shipped highway clip with a live view.",
    )
    demo.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    demo.add_argument("--agents", type=int, default=2, help="edge agents to start (default 2)")
    demo.add_argument(
        "--json",
        action="store_true",
        help="no live view; print one JSON object with the figures as the last line",
    )
    demo.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="MQTT broker: Mosquitto when installed (auto), or the embedded amqtt broker",
    )
    demo.set_defaults(handler=_demo)

    for add_commands in (
        add_provision_commands,
        add_fleet_commands,
        add_bench_commands,
        add_forecast_commands,
        add_models_commands,
        _add_train_commands,
        add_dataset_commands,
        add_measure_command,
    ):
        add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user mistakes end in one line on stderr, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo" and (args.duration <= 0 or args.agents < 1):
        parser.error("--duration must be positive and --agents at least 1")
    configure_logging(args.log_level, args.log_format)
    if args.command == "demo" and args.log_level == "INFO":
        logging.getLogger().setLevel(logging.WARNING)  # keep the live view readable
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as err:
        print(f"roadsense: configuration error: {err}", file=sys.stderr)
        return 2
    except RoadSenseError as err:
        print(f"roadsense: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
