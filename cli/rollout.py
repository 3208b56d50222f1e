"""``roadsense fleet rollout start|status|pause|resume|rollback``: model rollouts over gRPC."""

from __future__ import annotations

import argparse
import datetime
import json
import re
from pathlib import Path
from typing import Any

from roadsense.cli.credentials import api_token
from roadsense.cli.output import print_figures
from roadsense.core.errors import RequestError, RoadSenseError

DEADLINE_S = 30.0
_CANARY = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<percent>%?)$")


def parse_canary(text: str) -> tuple[float, int]:
    """(percent, count) of a --canary value: '10%' is a percent, '2' a count of devices."""
    match = _CANARY.fullmatch(text.strip())
    if match is None:
        raise RequestError(f"--canary {text!r}: give a percent like 10% or a count like 2")
    number = float(match["number"])
    if match["percent"]:
        if not 0 < number <= 100:
            raise RequestError(f"--canary {text}: a percent must be more than 0 and at most 100")
        return number, 0
    if number != int(number) or number < 1:
        raise RequestError(f"--canary {text}: a count must be a whole number of at least 1")
    return 0.0, int(number)


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    import grpc

    from roadsense.proto.client import ClientTls, bearer, open_channel
    from roadsense.proto.v1 import fleet_pb2_grpc

    token = api_token(args.token_file)
    if (args.cert_file is None) != (args.key_file is None):
        raise RequestError("give both --cert-file and --key-file, or neither")
    tls = None
    if args.ca_file is not None:
        try:
            tls = ClientTls.read(args.ca_file, args.cert_file, args.key_file)
        except OSError as err:
            raise RequestError(f"{err.filename}: cannot read: {err.strerror}") from err
    elif args.cert_file is not None:
        raise RequestError("--cert-file needs --ca-file (TLS towards the API)")
    metadata = bearer(token)
    with open_channel(args.address, tls) as channel:
        stub = fleet_pb2_grpc.FleetServiceStub(channel)
        try:
            return getattr(stub, method)(request, timeout=DEADLINE_S, metadata=metadata)
        except grpc.RpcError as err:
            code = err.code().name if err.code() else "UNKNOWN"
            raise RoadSenseError(f"{method} at {args.address}: {code}: {err.details()}") from err


def status_json(status: Any) -> dict[str, Any]:
    """A RolloutStatus as the JSON ``status --json`` prints."""
    from google.protobuf.json_format import MessageToDict

    body = MessageToDict(
        status, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    body["evaluation"] = json.loads(body.pop("evaluation_json") or "{}")
    for key in ("created_ms", "updated_ms"):
        body[key] = int(body[key])
    for device in body["devices"]:
        for key in ("sent_ms", "updated_ms"):
            device[key] = int(device[key])
    for event in body["events"]:
        event["time_ms"] = int(event["time_ms"])
    return body


def _when(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return moment.strftime("%H:%M:%S")


def _print(status: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps(status_json(status)))
        return 0
    print(f"rollout {status.rollout_id}: model {status.model_version}, {status.state}")
    print(f"  {status.reason}")
    counts: dict[str, int] = {}
    for device in status.devices:
        counts[device.state] = counts.get(device.state, 0) + 1
    print("  devices: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    for device in status.devices:
        where = "canary" if device.stage == 0 else f"stage {device.stage}"
        error = f"  ({device.error})" if device.error else ""
        print(
            f"  {device.device_id:<24} {where:<8} {device.state:<12} "
            f"{device.previous_version} -> {device.reported_version or '?'}{error}"
        )
    print("  transitions:")
    for event in status.events:
        print(
            f"  {_when(event.time_ms)} {event.actor}: {event.from_state or '-'} -> "
            f"{event.to_state}: {event.reason}"
        )
    return 0


def _start(args: argparse.Namespace) -> int:
    from roadsense.proto.v1 import fleet_pb2

    percent, count = parse_canary(args.canary)
    devices = [d.strip() for d in (args.devices or "").split(",") if d.strip()]
    if devices and args.site:
        raise RequestError("give --devices or --site, not both")
    request = fleet_pb2.StartRolloutRequest(
        model_version=args.model,
        canary_percent=percent,
        canary_devices=count,
        device_ids=devices,
        site=args.site or "",
    )
    return _print(_call(args, "StartRollout", request), args.json)


def _status(args: argparse.Namespace) -> int:
    from roadsense.proto.v1 import fleet_pb2

    request = fleet_pb2.GetRolloutRequest(rollout_id=args.rollout or "")
    return _print(_call(args, "GetRollout", request), args.json)


def _action(method: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        from roadsense.proto.v1 import fleet_pb2

        request = fleet_pb2.RolloutActionRequest(
            rollout_id=args.rollout or "", reason=args.reason or ""
        )
        return _print(_call(args, method, request), args.json)

    return run


def _bench_rollout(args: argparse.Namespace) -> int:
    from roadsense.bench.rollout import run_rollout_bench

    result = run_rollout_bench(
        devices=args.devices,
        model_mb=args.model_mb,
        canary_percent=args.canary,
        window_s=args.window,
        report_hz=args.report_hz,
    )
    return print_figures(result, args.json)


def add_rollout_bench(bench_commands: Any) -> None:
    """`bench rollout`."""
    bench_rollout = bench_commands.add_parser(
        "rollout",
        help="time a canary and one promotion stage to N simulated devices on loopback",
        description="Publish a new random-byte model of --model-mb and roll it out (canary "
        "--canary percent, window --window s, then the rest) to --devices simulated devices "
        "on a private Mosquitto and the real gRPC DownloadModel: seconds from start to all, "
        "against one device's bare download in the same run, bytes per device, frames and "
        "reports lost during the swap.",
    )
    bench_rollout.add_argument("--json", action="store_true", help="print one JSON line")
    bench_rollout.add_argument(
        "--devices", type=int, default=50, help="simulated devices (default 50)"
    )
    bench_rollout.add_argument(
        "--model-mb", type=float, default=6.0, help="size of the new model in MB (default 6)"
    )
    bench_rollout.add_argument(
        "--canary", type=float, default=10.0, help="canary percent of the devices (default 10)"
    )
    bench_rollout.add_argument(
        "--window", type=float, default=5.0, help="canary window in seconds (default 5)"
    )
    bench_rollout.add_argument(
        "--report-hz", type=float, default=5.0, help="reports per second per device (default 5)"
    )
    bench_rollout.set_defaults(handler=_bench_rollout)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", default="127.0.0.1:50051", help="the cloud's gRPC API (host:port)"
    )
    parser.add_argument(
        "--token-file", type=Path, help="file holding an admin token (default: ROADSENSE_TOKEN)"
    )
    parser.add_argument("--ca-file", type=Path, help="CA of the API's TLS certificate")
    parser.add_argument(
        "--cert-file",
        type=Path,
        help="client certificate, where the API asks for one (mutual TLS; `provision client-cert`)",
    )
    parser.add_argument("--key-file", type=Path, help="private key of --cert-file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def add_fleet_commands(commands: Any) -> None:
    """`fleet rollout ...`."""
    fleet = commands.add_parser(
        "fleet", help="act on the fleet of devices", description="Fleet operations."
    )
    fleet_commands = fleet.add_subparsers(dest="fleet_command", metavar="COMMAND", required=True)
    rollout = fleet_commands.add_parser(
        "rollout",
        help="roll a published model out: canary, verdict, stages, automatic rollback",
        description="Model rollouts through the cloud's admin-only FleetService RPCs.",
    )
    actions = rollout.add_subparsers(dest="rollout_command", metavar="COMMAND", required=True)
    start = actions.add_parser(
        "start",
        help="send a published model to a canary, then (within thresholds) to the rest",
        description="Start a rollout of --model: the canary devices get it at once; after the "
        "cloud's [rollout] window_s their figures are compared with the control devices'. "
        "Within thresholds the rest follow in [rollout] stages_percent; outside, the canaries "
        "get their previous model back and the rollout fails with the measured reason.",
    )
    start.add_argument("--model", required=True, help="published model version")
    start.add_argument(
        "--canary", required=True, help="canary size: a percent (10%%) or a device count (2)"
    )
    start.add_argument("--devices", help="comma-separated device ids (default: the whole fleet)")
    start.add_argument("--site", help="every device at this site of the fleet manifest")
    _common(start)
    start.set_defaults(handler=_start)
    status = actions.add_parser(
        "status",
        help="a rollout's state, devices and transitions",
        description="The rollout (default: the newest), each device's stage and model, and "
        "every recorded transition: who, when, why.",
    )
    status.add_argument("--rollout", help="rollout id (default: the newest)")
    _common(status)
    status.set_defaults(handler=_status)
    for name, method, text in (
        ("pause", "PauseRollout", "hold a running rollout where it is"),
        ("resume", "ResumeRollout", "carry a paused rollout on"),
        ("rollback", "RollbackRollout", "send every device that took the model its previous one"),
    ):
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        action.add_argument("--rollout", help="rollout id (default: the newest)")
        action.add_argument("--reason", help="why, for the record")
        _common(action)
        action.set_defaults(handler=_action(method))
