"""The one command-line entry point: ``roadsense <command> ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from roadsense.cli.provision import add_provision_commands
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
    serve(config)
    return 0


def _cloud_check(args: argparse.Namespace) -> int:
    from roadsense.cloud.check import check
    from roadsense.cloud.config import CloudConfig
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


def _cloud_snapshot(args: argparse.Namespace) -> int:
    from roadsense.cloud.config import CloudConfig
    from roadsense.cloud.snapshot import request_snapshot, write_snapshot
    from roadsense.core.config import load_config

    config = load_config(CloudConfig, args.config).resolved(args.config.resolve().parent)
    still = request_snapshot(
        config.mqtt,
        args.device,
        args.camera,
        username=config.ingest.username,
        max_width=args.max_width,
        timeout_s=args.timeout,
    )
    roi = write_snapshot(still, args.out, draw_roi=args.draw_roi)
    facts = {
        "image": str(args.out),
        "width": still.width,
        "height": still.height,
        "bytes": len(still.jpeg),
        "capture_time_ms": still.capture_time_ms,
        "roi": list(roi) if roi else None,
        "blurred_regions": still.blurred_regions,
    }
    return _print_figures(facts, args.json)


def _cloud_token(args: argparse.Namespace) -> int:
    from roadsense.cloud.auth import new_token

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


def _load_series(args: argparse.Namespace) -> Any:
    """The series named by --speeds/--weather/--start/--interval-min; None after a usage error."""
    from datetime import datetime

    from roadsense.models.series import load_series

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
    from roadsense.models.forecaster import ForecasterSettings

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


def _training_progress(bar: Any) -> Any:
    task = bar.add_task("training", total=None)

    def progress(epoch: int, epochs: int, loss: float) -> None:
        bar.update(
            task,
            total=epochs,
            completed=epoch,
            description=f"training (validation loss {loss:.4f})",
        )

    return progress


def _train_forecaster(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from roadsense.models.forecast_eval import evaluate
    from roadsense.models.forecast_export import train_and_export

    inputs = _forecast_inputs(args)
    if inputs is None:
        return 2
    series, settings = inputs
    interval = (series.times[1] - series.times[0]).total_seconds() / 60
    with Progress(console=Console(stderr=True), transient=True) as bar:
        evaluation = (
            None
            if args.skip_evaluation
            else evaluate(series, settings, args.train_fraction, _training_progress(bar))
        )
        path = train_and_export(
            series,
            settings,
            args.out,
            interval_min=interval,
            version=args.version,
            provenance=args.provenance,
            evaluation=evaluation,
            progress=_training_progress(bar),
        )
    print(path)
    return 0


def _train_congestion(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from roadsense.models.congestion_train import CnnSettings, export_cnn, train_cnn
    from roadsense.models.image_sets import class_names, evaluation_classes, load_images

    settings = CnnSettings(width=args.width, height=args.height, epochs=args.epochs, seed=args.seed)
    if min(args.width, args.height) < 32 or args.epochs < 1:
        print("roadsense: --width/--height must be >= 32 and --epochs >= 1", file=sys.stderr)
        return 2
    classes = class_names(args.images)
    data = load_images(args.images, classes, settings.width, settings.height)
    tests = {
        name: load_images(
            folder, evaluation_classes(folder, classes), settings.width, settings.height
        )
        for name, folder in (("holdout", args.holdout), ("unseen_camera", args.unseen))
        if folder is not None
    }
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("training", total=settings.epochs)

        def progress(epoch: int, epochs: int, accuracy: float) -> None:
            bar.update(
                task,
                completed=epoch,
                description=f"training (validation accuracy {accuracy:.3f})",
            )

        model = train_cnn(data, settings, tests, progress)
    extra = _dataset_summary(args.images)
    for name, folder in (("holdout", args.holdout), ("unseen_camera", args.unseen)):
        if folder is not None:
            extra[name] = _dataset_summary(folder)
    path = export_cnn(
        model,
        args.out,
        name=args.name,
        version=args.version,
        description=args.description,
        reference_images=data.images,
        extra=extra,
    )
    figures = {"model": str(path), **model.evaluation}
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        print(json.dumps(figures, indent=2, sort_keys=True))
    return 0


def _dataset_summary(folder: Path) -> dict[str, Any]:
    """The dataset.json a dataset builder left beside the images, if any."""
    summary = folder / "dataset.json"
    if not summary.is_file():
        return {"folder": str(folder)}
    try:
        loaded: dict[str, Any] = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"folder": str(folder), "dataset_json": "unreadable"}
    return {"folder": str(folder), "dataset": loaded}


def _forecast_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from roadsense.models.forecast_eval import evaluate

    inputs = _forecast_inputs(args)
    if inputs is None:
        return 2
    series, settings = inputs
    horizons = settings.horizons
    with Progress(console=Console(stderr=True), transient=True) as bar:
        results = evaluate(series, settings, args.train_fraction, _training_progress(bar))
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
    import os
    from dataclasses import asdict

    from roadsense.cloud.replay import ReplayTarget, replay

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
    token = os.environ.get("ROADSENSE_TOKEN")
    if args.token_file:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            print(f"roadsense: --token-file: {err.strerror}", file=sys.stderr)
            return 2
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
    _print_figures(figures, args.json)
    return 1 if summary.rejected else 0


def _forecast_export(args: argparse.Namespace) -> int:
    from roadsense.cloud.export import export_series

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


def _bench_classifier(args: argparse.Namespace) -> int:
    from roadsense.bench.classifier import run_classifier_bench

    result = run_classifier_bench(width=args.width, height=args.height, min_s=args.seconds)
    return _print_figures(result, args.json)


def _bench_forecast(args: argparse.Namespace) -> int:
    from roadsense.bench.forecast import run_forecast_bench

    result = run_forecast_bench(segments=args.segments, repeats=args.repeats)
    return _print_figures(result, args.json)


def _build_engine(args: argparse.Namespace) -> int:
    from roadsense.edge.backends.tensorrt import TensorRtOptions, cuda_runtime, ensure_engine
    from roadsense.models.card import load_card

    card = load_card(args.model)
    options = TensorRtOptions(
        precision=args.precision,
        engine_dir=args.engine_dir,
        calibration_images=args.calibration_images,
    )
    path, built = ensure_engine(args.model, card, options, cuda_runtime())
    return _print_figures(
        {"engine": str(path), "built": built, "precision": args.precision}, args.json
    )


def _evaluate_model(args: argparse.Namespace) -> int:
    from roadsense.models.congestion_eval import evaluate_model, record_evaluation

    options: dict[str, object] = {}
    if args.threads:
        options["intra_op_threads"] = args.threads
    report = evaluate_model(args.model, args.images, args.backend, options)
    if args.record:
        record_evaluation(args.model, args.record, report)
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    print(f"{report['model']} ({report['backend']}) on {report['images']} images")
    print(f"accuracy {report['accuracy']}  macro-F1 {report['macro_f1']} (classes present)")
    print("F1: " + ", ".join(f"{name} {value}" for name, value in report["f1"].items()))
    names = report["confusion"]["rows_true_cols_predicted"]
    print("confusion, rows true, columns predicted: " + " ".join(names))
    for name, row in zip(names, report["confusion"]["matrix"], strict=True):
        print(f"  {name:>9s} {row}")
    return 0


def _print_figures(figures: dict[str, Any], as_json: bool) -> int:
    """A benchmark's figures: one JSON line, or one ``key: value`` line each."""
    if as_json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0


def _bench_edge(args: argparse.Namespace) -> int:
    from roadsense.bench.edge import run_edge_bench
    from roadsense.models.shipped import DEFAULT_CNN

    result = run_edge_bench(
        args.model or DEFAULT_CNN,
        batch=args.batch,
        max_cameras=args.max_cameras,
        trial_s=args.trial_seconds,
    )
    return _print_figures(result, args.json)


def _bench_ingest(args: argparse.Namespace) -> int:
    from roadsense.bench.ingest import run_ingest_bench

    result = run_ingest_bench(
        devices=args.devices, messages=args.messages, rate=args.rate, seconds=args.seconds
    )
    return _print_figures(result, args.json)


def _bench_grpc(args: argparse.Namespace) -> int:
    from roadsense.bench.grpc import run_grpc_bench

    result = run_grpc_bench(segments=args.segments, calls=args.calls, watchers=args.watchers)
    return _print_figures(result, args.json)


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


def _dataset_congestion(args: argparse.Namespace) -> int:
    from roadsense.models.footage.config import default_config_path, load_footage_config
    from roadsense.models.footage.dataset import build_dataset

    config_path = args.config or default_config_path(args.video)
    config = load_footage_config(config_path)
    summary = build_dataset(
        args.video,
        args.out,
        config,
        per_class=args.per_class,
        holdout_fraction=args.holdout_fraction,
        seed=args.seed,
        config_source=str(config_path),
    )
    manifest = summary.manifest
    if args.json:
        print(json.dumps({key: manifest[key] for key in manifest if key != "config"}))
    else:
        for name, count in summary.counts.items():
            print(
                f"{name}: {count} ({summary.real[name]} real, {summary.composite[name]} composite)"
            )
        if summary.holdout_out is not None:
            print(f"holdout {summary.holdout_out}: {summary.holdout_counts}")
        print(f"wrote {summary.out} in {manifest['build_seconds']} s")
    return 0


def _dataset_frames(args: argparse.Namespace) -> int:
    from roadsense.models.footage.labelled import build_labelled_frames

    built = build_labelled_frames(args.labels, args.out, every=args.every)
    if args.json:
        print(json.dumps(built.manifest, sort_keys=True))
    else:
        for name, count in built.counts.items():
            print(f"{name}: {count}")
        print(f"wrote {built.out}")
    return 0


def _add_dataset_commands(commands: Any) -> None:
    dataset = commands.add_parser(
        "dataset", help="build training datasets", description="Training-data builders."
    )
    dataset_commands = dataset.add_subparsers(
        dest="dataset_command", metavar="COMMAND", required=True
    )
    congestion = dataset_commands.add_parser(
        "congestion",
        help="image-folder congestion dataset from a clip: auto-labels plus composites",
        description="Auto-label sampled frames (ROI occupancy and motion), fill every class "
        "to --per-class with composites of vehicles cut from the clip, and write "
        "OUT/<label>/*.png and OUT/dataset.json; --holdout-fraction keeps the end of the "
        "clip as OUT_holdout (real frames only).",
    )
    congestion.add_argument("--video", type=Path, required=True, help="video file to use")
    congestion.add_argument("--out", type=Path, required=True, help="new output folder")
    congestion.add_argument(
        "--config", type=Path, help="footage TOML (default: the shipped one for this clip)"
    )
    congestion.add_argument(
        "--per-class", type=int, default=200, help="images per class (default 200)"
    )
    congestion.add_argument(
        "--holdout-fraction",
        type=float,
        default=0.0,
        help="last share of the clip kept as OUT_holdout, real frames only (default 0)",
    )
    congestion.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    congestion.add_argument(
        "--json", action="store_true", help="print one JSON object (dataset.json less config)"
    )
    congestion.set_defaults(handler=_dataset_congestion)

    frames = dataset_commands.add_parser(
        "frames",
        help="class folders from hand-labelled frame ranges of clips (a test set)",
        description="Read LABELS (CSV: video,first_frame,last_frame,label; frames 0-based "
        "and inclusive, videos relative to the CSV) and write every --every-th labelled "
        "frame to OUT/<label>/<clip>_f<frame>.png, with OUT/dataset.json recording the "
        "clips' sha256 and the ranges.",
    )
    frames.add_argument("--labels", type=Path, required=True, help="labels CSV")
    frames.add_argument("--out", type=Path, required=True, help="new output folder")
    frames.add_argument(
        "--every", type=int, default=1, help="keep every Nth frame of a range (default 1)"
    )
    frames.add_argument("--json", action="store_true", help="print one JSON object")
    frames.set_defaults(handler=_dataset_frames)


def _add_train_commands(commands: Any) -> None:
    train = commands.add_parser("train", help="train models", description="Model training.")
    train_commands = train.add_subparsers(dest="train_command", metavar="COMMAND", required=True)
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

    congestion = train_commands.add_parser(
        "congestion",
        help="train the congestion CNN on class folders of images, evaluate, export ONNX",
        description="Train MobileNetV3-Small on DIR/<label>/*.png|jpg (early stopping on a "
        "stratified validation slice), report accuracy, macro-F1 and the confusion matrix "
        "on that slice and on --holdout, export ONNX (checked against torch to 1e-4) with "
        "its card.",
    )
    congestion.add_argument("--images", type=Path, required=True, help="class folders")
    congestion.add_argument(
        "--holdout", type=Path, help="class folders never trained on (e.g. later frames)"
    )
    congestion.add_argument(
        "--unseen",
        type=Path,
        help="class folders of a camera the training images never came from",
    )
    congestion.add_argument("--out", type=Path, required=True, help="output folder")
    congestion.add_argument("--name", default="congestion", help="model file name")
    congestion.add_argument("--version", default="1.0.0", help="model version for the card")
    congestion.add_argument(
        "--description",
        default="Congestion classifier trained with roadsense train congestion.",
        help="what the model is (for the card)",
    )
    congestion.add_argument("--width", type=int, default=160, help="input width (default 160)")
    congestion.add_argument("--height", type=int, default=128, help="input height (default 128)")
    congestion.add_argument("--epochs", type=int, default=10, help="most epochs (default 10)")
    congestion.add_argument("--seed", type=int, default=0, help="random seed")
    congestion.add_argument("--json", action="store_true", help="print one JSON line")
    congestion.set_defaults(handler=_train_congestion)


def _add_models_commands(commands: Any) -> None:
    models = commands.add_parser(
        "models", help="model artifacts", description="Model artifacts on this machine."
    )
    models_commands = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    build = models_commands.add_parser(
        "build-engine",
        help="build (or find) the TensorRT engine of an ONNX model for this GPU",
        description="Parse the ONNX, build an fp32/fp16/int8 engine with the card's batch "
        "range as optimisation profile, and cache it under a key of (ONNX sha256, TensorRT "
        "version, GPU and compute capability, precision, batch range). An engine already "
        "cached for exactly that key is reused. Needs TensorRT and pycuda.",
    )
    build.add_argument("--model", type=Path, required=True, help="ONNX with its card beside it")
    build.add_argument(
        "--precision", choices=["fp32", "fp16", "int8"], default="fp16", help="engine precision"
    )
    build.add_argument(
        "--engine-dir", type=Path, help="engine cache (default ~/.cache/roadsense/engines)"
    )
    build.add_argument(
        "--calibration-images", type=Path, help="int8: folder of frames to calibrate with"
    )
    build.add_argument("--json", action="store_true", help="print one JSON line")
    build.set_defaults(handler=_build_engine)

    evaluate = models_commands.add_parser(
        "evaluate",
        help="score a congestion model on labelled images (accuracy, macro-F1, confusion)",
        description="Run the model through an edge classifier backend (the card's "
        "preprocessing, as at the roadside) on IMAGES/<label>/*.png|jpg, whose folders "
        "must be some of the card's labels, and report accuracy, macro-F1 over the "
        "classes present and the confusion matrix.",
    )
    evaluate.add_argument("--model", type=Path, required=True, help="ONNX with its card")
    evaluate.add_argument("--images", type=Path, required=True, help="class folders")
    evaluate.add_argument(
        "--backend", default="onnxruntime", help="classifier backend (default onnxruntime)"
    )
    evaluate.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: auto)")
    evaluate.add_argument(
        "--record",
        metavar="NAME",
        help="also write the figures into the model's card as evaluation.NAME "
        "(e.g. unseen_camera); the ONNX is not touched",
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON line")
    evaluate.set_defaults(handler=_evaluate_model)


def _add_forecast_commands(commands: Any) -> None:
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


def _add_bench_commands(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure throughput",
        description="Benchmarks that print ratios against a baseline measured in the same run.",
    )
    bench_commands = bench.add_subparsers(dest="bench_command", metavar="COMMAND", required=True)
    bench_edge = bench_commands.add_parser(
        "edge",
        help="classifier alone vs the whole edge pipeline, and cameras per box at 2 Hz",
        description="Measure model_only_fps, pipeline_fps, their ratio and cameras_at_2hz "
        "on the shipped clip.",
    )
    bench_edge.add_argument("--json", action="store_true", help="print one JSON line")
    bench_edge.add_argument(
        "--model", type=Path, help="ONNX model with its card (default: the shipped one)"
    )
    bench_edge.add_argument("--batch", type=int, default=8, help="classifier batch (default 8)")
    bench_edge.add_argument(
        "--max-cameras", type=int, default=64, help="most cameras to try (default 64)"
    )
    bench_edge.add_argument(
        "--trial-seconds", type=float, default=6.0, help="length of each camera trial"
    )
    bench_edge.set_defaults(handler=_bench_edge)
    bench_ingest = bench_commands.add_parser(
        "ingest",
        help="cloud ingest vs a bare subscriber on the same broker, and capture-to-query latency",
        description="Measure raw_subscriber_msgs_per_s, ingest_msgs_per_s, their ratio and "
        "p99_capture_to_queryable_ms at a fixed rate, on a private Mosquitto.",
    )
    bench_ingest.add_argument("--json", action="store_true", help="print one JSON line")
    bench_ingest.add_argument(
        "--devices", type=int, default=1000, help="simulated devices (default 1000)"
    )
    bench_ingest.add_argument(
        "--messages", type=int, default=20_000, help="reports per throughput run"
    )
    bench_ingest.add_argument(
        "--rate", type=float, default=2000.0, help="fixed rate of the latency run (msgs/s)"
    )
    bench_ingest.add_argument(
        "--seconds", type=float, default=10.0, help="length of the latency run"
    )
    bench_ingest.set_defaults(handler=_bench_ingest)
    bench_grpc = bench_commands.add_parser(
        "grpc",
        help="GetCityState latency on a big city and change fan-out to many watchers",
        description="Measure GetCityState p50/p99 against a health-check baseline, and the "
        "p99 delivery latency of a change to concurrent WatchCityState streams.",
    )
    bench_grpc.add_argument("--json", action="store_true", help="print one JSON line")
    bench_grpc.add_argument(
        "--segments", type=int, default=10_000, help="segments in the city (default 10000)"
    )
    bench_grpc.add_argument("--calls", type=int, default=200, help="GetCityState calls")
    bench_grpc.add_argument(
        "--watchers", type=int, default=100, help="concurrent watch streams (default 100)"
    )
    bench_grpc.set_defaults(handler=_bench_grpc)
    bench_forecast = bench_commands.add_parser(
        "forecast",
        help="forecast many segments in one batch: ONNX Runtime vs torch eager",
        description="Milliseconds to forecast --segments segments in one batch with the "
        "forecaster's network in ONNX Runtime and in torch eager (median of --repeats), "
        "and their ratio. Needs the train extra (torch).",
    )
    bench_forecast.add_argument("--json", action="store_true", help="print one JSON line")
    bench_forecast.add_argument(
        "--segments", type=int, default=10_000, help="segments in the batch (default 10000)"
    )
    bench_forecast.add_argument(
        "--repeats", type=int, default=20, help="timed runs of each (default 20)"
    )
    bench_forecast.set_defaults(handler=_bench_forecast)
    bench_classifier = bench_commands.add_parser(
        "classifier",
        help="the congestion CNN: ONNX Runtime vs torch eager img/s by batch size",
        description="Images per second of MobileNetV3-Small (same weights in both runtimes) "
        "at batch 1, 4 and 8 on frames of the shipped clip, and their ratio. Needs the "
        "train extra (torch).",
    )
    bench_classifier.add_argument("--json", action="store_true", help="print one JSON line")
    bench_classifier.add_argument("--width", type=int, default=224, help="input width")
    bench_classifier.add_argument("--height", type=int, default=224, help="input height")
    bench_classifier.add_argument(
        "--seconds", type=float, default=2.0, help="least seconds timed per figure"
    )
    bench_classifier.set_defaults(handler=_bench_classifier)


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

    cloud = commands.add_parser("cloud", help="run the cloud service", description="Cloud service.")
    cloud_commands = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND", required=True)
    serve = cloud_commands.add_parser(
        "serve",
        help="ingest telemetry and serve the gRPC API until SIGTERM",
        description="Run the cloud service: MQTT ingest → SQLite store → gRPC API.",
    )
    serve.add_argument("--config", type=Path, required=True, help="cloud TOML configuration")
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

    add_provision_commands(commands)
    _add_bench_commands(commands)
    _add_forecast_commands(commands)
    _add_models_commands(commands)
    _add_train_commands(commands)
    _add_dataset_commands(commands)
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
