"""`roadsense forecast …` and `roadsense train forecaster`: the traffic-flow forecaster."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from roadsense.cli.credentials import api_token
from roadsense.cli.output import print_figures, training_progress


def _load_series(args: argparse.Namespace) -> Any:
    """The series named by --speeds/--weather/--start/--interval-min; None after a usage error."""
    from datetime import datetime

    from roadsense.models.forecast.series import load_series

    try:
        start = datetime.fromisoformat(args.start) if args.start else None
    except ValueError:
        print(f"roadsense: --start {args.start!r} is not an ISO 8601 time", file=sys.stderr)
        return None
    return load_series(
        args.speeds,
        weather_path=args.weather,
        start=start,
        interval_min=args.interval_min,
        time_zone=args.time_zone,
    )


def _forecast_inputs(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """(series, settings) from the shared forecasting arguments; None after a usage error."""
    from roadsense.models.training.forecast.forecaster import ForecasterSettings

    try:
        horizons = tuple(int(h) for h in args.horizons.split(","))
    except ValueError:
        print(
            f"roadsense: --horizons {args.horizons!r}: expected steps like 1,2,3,4",
            file=sys.stderr,
        )
        return None
    if not horizons or min(horizons) < 1 or args.window < 1 or not 0 < args.train_fraction < 1:
        print(
            "roadsense: --window and horizons must be >= 1, --train-fraction in (0, 1)",
            file=sys.stderr,
        )
        return None
    series = _load_series(args)
    if series is None:
        return None
    settings = ForecasterSettings(
        window=args.window, horizons=horizons, epochs=args.epochs, seed=args.seed
    )
    return series, settings


def _train_forecaster(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from roadsense.models.training.forecast.evaluate import evaluate
    from roadsense.models.training.forecast.export import train_and_export

    inputs = _forecast_inputs(args)
    if inputs is None:
        return 2
    series, settings = inputs
    interval = (series.times[1] - series.times[0]).total_seconds() / 60
    with Progress(console=Console(stderr=True), transient=True) as bar:
        evaluation = (
            None
            if args.skip_evaluation
            else evaluate(series, settings, args.train_fraction, training_progress(bar))
        )
        path = train_and_export(
            series,
            settings,
            args.out,
            interval_min=interval,
            version=args.version,
            provenance=args.provenance,
            evaluation=evaluation,
            progress=training_progress(bar),
        )
    print(path)
    return 0


def _forecast_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from roadsense.models.training.forecast.evaluate import evaluate

    inputs = _forecast_inputs(args)
    if inputs is None:
        return 2
    series, settings = inputs
    horizons = settings.horizons
    with Progress(console=Console(stderr=True), transient=True) as bar:
        results = evaluate(series, settings, args.train_fraction, training_progress(bar))
    for horizon in horizons:
        for name, figures in results[str(horizon)].items():
            print(
                f"h={horizon} {name:12s} rmse {figures['rmse']:.4f} mae {figures['mae']:.4f} "
                f"acc {figures['accuracy']:.4f} r2 {figures['r2']:.4f} "
                f"masked_rmse {figures['masked_rmse']:.4f} rmse@h {figures['rmse_at_step']:.4f}"
            )
    if args.json:
        print(json.dumps(results, sort_keys=True))
    return 0


def _forecast_replay(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from roadsense.cloud.tools.replay import ReplayTarget, replay

    if args.speedup < 0 or (args.align == "now" and args.speedup != 1):
        print(
            "roadsense: --speedup must be >= 0, and --align now replays in real time "
            "(leave --speedup at 1)",
            file=sys.stderr,
        )
        return 2
    series = _load_series(args)
    if series is None:
        return 2
    token = api_token(args.token_file)
    first = args.from_row
    last = series.steps if args.rows is None else min(series.steps, first + args.rows)
    if not 0 <= first < last:
        print(f"roadsense: --from-row/--rows select no rows of {series.steps}", file=sys.stderr)
        return 2
    summary = replay(
        series,
        ReplayTarget(args.target, token=token, ca_file=args.ca_file),
        speedup=args.speedup,
        align=args.align,
        source=args.source or f"replay:{args.speeds.name}",
        unit=args.unit,
        rows=range(first, last),
    )
    for rejection in summary.rejections:
        print(f"roadsense: refused: {rejection}", file=sys.stderr)
    figures = asdict(summary)
    figures.pop("rejections")
    print_figures(figures, args.json)
    return 1 if summary.rejected else 0


def _forecast_export(args: argparse.Namespace) -> int:
    from roadsense.cloud.tools.export import export_series

    if args.interval_min <= 0:
        print("roadsense: --interval-min must be positive", file=sys.stderr)
        return 2
    summary = export_series(
        args.db, args.out, round(args.interval_min * 60_000), source=args.source
    )
    print(
        f"{summary.speeds}: {summary.rows} rows x {summary.segments} segments from "
        f"{summary.observations} observations"
        + (f"; weather in {summary.weather}" if summary.weather else "; no weather")
    )
    return 0


def _add_series_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speeds", type=Path, required=True, help="series CSV")
    parser.add_argument("--weather", type=Path, help="weather CSV aligned by row")
    parser.add_argument("--start", help="ISO 8601 time of the first row (no date column)")
    parser.add_argument("--interval-min", type=float, help="minutes between rows")
    parser.add_argument(
        "--time-zone",
        default="UTC",
        help="IANA zone of the file's clock times, e.g. Asia/Shanghai (default UTC)",
    )


def _add_series_arguments(parser: argparse.ArgumentParser) -> None:
    _add_series_files(parser)
    parser.add_argument("--window", type=int, default=4, help="input steps (default 4)")
    parser.add_argument(
        "--horizons", default="1,2,3,4", help="steps ahead, comma-separated (default 1,2,3,4)"
    )
    parser.add_argument(
        "--train-fraction", type=float, default=0.8, help="training share, in time order"
    )
    parser.add_argument("--epochs", type=int, default=40, help="most training epochs")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def add_forecast_commands(commands: Any) -> None:
    forecast = commands.add_parser(
        "forecast", help="traffic-flow forecasting", description="The GRU traffic forecaster."
    )
    forecast_commands = forecast.add_subparsers(
        dest="forecast_command", metavar="COMMAND", required=True
    )
    evaluate = forecast_commands.add_parser(
        "evaluate",
        help="train on the first part of a series, score on the rest against baselines",
        description="Chronological split; the GRU against historical average and "
        "persistence, per horizon, with the T-GCN metrics and masked ones.",
    )
    _add_series_arguments(evaluate)
    evaluate.add_argument("--json", action="store_true", help="last line: one JSON object")
    evaluate.set_defaults(handler=_forecast_evaluate)

    replay_command = forecast_commands.add_parser(
        "replay",
        help="stream a series CSV into the cloud as a city feed (IngestObservations)",
        description="Send each row as one IngestObservations batch (and IngestWeather). "
        "--align original keeps the file's times and sends a row every interval/speedup; "
        "--align now shifts the file by whole weeks so the current time's row is now, sends "
        "the earlier rows at once and each later row when its time comes. The token comes "
        "from --token-file or ROADSENSE_TOKEN.",
    )
    _add_series_files(replay_command)
    replay_command.add_argument("--target", required=True, help="cloud gRPC HOST:PORT")
    replay_command.add_argument(
        "--speedup", type=float, default=1.0, help="times real pace (0: as fast as possible)"
    )
    replay_command.add_argument(
        "--align",
        choices=["original", "now"],
        default="original",
        help="original: the file's times (default); now: shifted by whole weeks to now",
    )
    replay_command.add_argument("--source", help="source name (default replay:<file name>)")
    replay_command.add_argument("--unit", default="km/h", help="unit of the values")
    replay_command.add_argument("--from-row", type=int, default=0, help="first row (0-based)")
    replay_command.add_argument("--rows", type=int, help="rows to send (default: all)")
    replay_command.add_argument("--token-file", type=Path, help="file holding a feed token")
    replay_command.add_argument("--ca-file", type=Path, help="CA of the cloud's TLS (PEM)")
    replay_command.add_argument("--json", action="store_true", help="print one JSON line")
    replay_command.set_defaults(handler=_forecast_replay)

    export = forecast_commands.add_parser(
        "export",
        help="write a cloud store's observations as series CSV files to retrain on",
        description="speeds.csv (date + one column per segment, interval means, 0 = none) "
        "and weather.csv aligned by row, readable by `forecast evaluate` and `train "
        "forecaster`.",
    )
    export.add_argument("--db", type=Path, required=True, help="the cloud's SQLite store")
    export.add_argument("--out", type=Path, required=True, help="output folder")
    export.add_argument(
        "--interval-min", type=float, default=15.0, help="minutes per row (default 15)"
    )
    export.add_argument("--source", help="only this source's observations")
    export.set_defaults(handler=_forecast_export)


def add_forecaster_training(train_commands: Any) -> None:
    """`train forecaster`."""
    forecaster = train_commands.add_parser(
        "forecaster",
        help="train the GRU forecaster on a whole series and export ONNX with its card",
        description="Evaluate (unless --skip-evaluation), train on the whole series, export "
        "ONNX, check it against torch (1e-4) and write forecaster.card.json.",
    )
    _add_series_arguments(forecaster)
    forecaster.add_argument("--out", type=Path, required=True, help="output folder")
    forecaster.add_argument("--version", default="0.1.0", help="model version for the card")
    forecaster.add_argument(
        "--provenance", default="", help="where the training data came from (for the card)"
    )
    forecaster.add_argument(
        "--skip-evaluation", action="store_true", help="do not run the 80/20 evaluation first"
    )
    forecaster.set_defaults(handler=_train_forecaster)
