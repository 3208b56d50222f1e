"""``roadsense bench ...``: the benchmarks, each printing ratios against a baseline measured in
the same run (the modules under ``bench/``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from roadsense.cli.output import print_figures
from roadsense.cli.rollout import add_rollout_bench


def _positive(text: str) -> int:
    """A whole number of at least 1 (argparse names the option when it is not)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _bench_classifier(args: argparse.Namespace) -> int:
    from roadsense.bench.classifier import run_classifier_bench
    from roadsense.models.shipped import DEFAULT_CNN

    result = run_classifier_bench(
        args.model or DEFAULT_CNN, width=args.width, height=args.height, min_s=args.seconds
    )
    return print_figures(result, args.json)


def _bench_detector(args: argparse.Namespace) -> int:
    from roadsense.bench.detector import run_detector_bench
    from roadsense.models.detection.card import parse_input_size
    from roadsense.models.shipped import DEFAULT_DETECTOR

    sizes = [parse_input_size(s) for s in args.sizes.split(",")] if args.sizes else []
    result = run_detector_bench(
        args.model or DEFAULT_DETECTOR, sizes, min_s=args.seconds, rounds=args.rounds
    )
    return print_figures(result, args.json)


def _bench_forecast(args: argparse.Namespace) -> int:
    from roadsense.bench.forecast import run_forecast_bench

    result = run_forecast_bench(segments=args.segments, repeats=args.repeats)
    return print_figures(result, args.json)


def _bench_edge(args: argparse.Namespace) -> int:
    from roadsense.bench.edge import run_edge_bench
    from roadsense.models.shipped import DEFAULT_CNN

    if args.source == "rtsp":
        from roadsense.bench.edge_rtsp import run_rtsp_bench

        figures = run_rtsp_bench(
            args.model or DEFAULT_CNN,
            resolution=args.resolution,
            sample_hz=args.sample_hz,
            max_cameras=args.max_cameras,
            trial_s=args.trial_seconds or 10.0,
            measure=args.measure,
        )
        return print_figures(figures, args.json)
    result = run_edge_bench(
        args.model or DEFAULT_CNN,
        batch=args.batch,
        max_cameras=args.max_cameras,
        trial_s=args.trial_seconds or 6.0,
        measure=args.measure,
    )
    return print_figures(result, args.json)


def _worker_counts(text: str) -> list[int]:
    """ "1,2,4" → [1, 2, 4]; anything else is a usage error."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or any(n < 1 or n > 64 for n in counts):
        raise argparse.ArgumentTypeError(
            f"expected worker counts from 1 to 64 separated by commas, such as 1,2,4: {text!r}"
        )
    return counts


def _bench_ingest(args: argparse.Namespace) -> int:
    from roadsense.bench.ingest import run_ingest_bench
    from roadsense.bench.ingest_workers import run_worker_bench

    common = {
        "devices": args.devices,
        "messages": args.messages,
        "rate": args.rate,
        "seconds": args.seconds,
        "store": args.store,
    }
    if args.workers:
        return print_figures(run_worker_bench(workers=args.workers, **common), args.json)
    return print_figures(run_ingest_bench(**common), args.json)


def _bench_delivery(args: argparse.Namespace) -> int:
    from roadsense.bench.delivery import run_delivery_bench

    result = run_delivery_bench(rate=args.rate, seconds=args.seconds)
    return print_figures(result, args.json)


def _bench_grpc(args: argparse.Namespace) -> int:
    from roadsense.bench.grpc import run_grpc_bench

    result = run_grpc_bench(
        segments=args.segments,
        calls=args.calls,
        watchers=args.watchers,
        clients=args.clients,
        seconds=args.seconds,
    )
    return print_figures(result, args.json)


def _add_detector_bench(bench_commands: Any) -> None:
    bench_detector = bench_commands.add_parser(
        "detector",
        help="vehicle detector img/s beside the congestion CNN, ONNX Runtime",
        description="Whole detector calls (letterbox, network, decoding) at batch 1 and 8 "
        "on real frames, with the classifier's rate measured in the same run; the models "
        "take turns in rounds and each figure is the median of its rounds.",
    )
    bench_detector.add_argument("--model", type=Path, help="detector ONNX (default: shipped)")
    bench_detector.add_argument(
        "--sizes",
        help="also bench these input sizes, e.g. 416,640,512x416 (width[xheight], multiples of 32)",
    )
    bench_detector.add_argument(
        "--seconds", type=float, default=5.0, help="least seconds timed per figure, all rounds"
    )
    bench_detector.add_argument(
        "--rounds", type=_positive, default=5, help="turns each model takes (default 5)"
    )
    bench_detector.add_argument("--json", action="store_true", help="print one JSON object")
    bench_detector.set_defaults(handler=_bench_detector)


def add_bench_commands(commands: Any) -> None:
    """``roadsense bench ...``: each benchmark prints ratios against a same-run baseline."""
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
        "--trial-seconds", type=float, help="length of each camera trial (6 s; rtsp 10 s)"
    )
    bench_edge.add_argument(
        "--source",
        choices=["file", "rtsp"],
        default="file",
        help="file: the shipped clip (classifier vs pipeline, cameras at 2 Hz); rtsp: "
        "H.264 cameras from a local RTSP server, keyframe decoding vs decode-all",
    )
    bench_edge.add_argument(
        "--resolution",
        choices=["1080p", "720p", "360p"],
        default="1080p",
        help="rtsp: stream resolution (default 1080p)",
    )
    bench_edge.add_argument(
        "--sample-hz", type=float, default=1.0, help="rtsp: camera sample rate (default 1)"
    )
    bench_edge.add_argument(
        "--measure",
        action="store_true",
        help="the measuring agent: detector alone vs measured frames/s, cameras at 1 Hz "
        "(with --source rtsp: the cameras measured, not classified)",
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
    bench_ingest.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the cloud's store: a SQLite file, or a throwaway PostgreSQL cluster the bench "
        "starts (default sqlite)",
    )
    bench_ingest.add_argument(
        "--workers",
        type=_worker_counts,
        default=None,
        help="worker counts, such as 1,2,4: run that many `cloud serve --role ingest` "
        "processes on one shared subscription per configuration, with CPU per message per "
        "worker (default: the in-process ingest)",
    )
    bench_ingest.set_defaults(handler=_bench_ingest)
    bench_delivery = bench_commands.add_parser(
        "delivery",
        help="what waiting for the cloud's confirmation costs the edge outbox",
        description="Send reports at --rate through a private Mosquitto to the cloud ingest "
        "with delivery = broker (the baseline) and delivery = cloud, in the same run: outbox "
        "depth and bytes, time in the outbox, drain time, confirmations sent.",
    )
    bench_delivery.add_argument("--json", action="store_true", help="print one JSON line")
    bench_delivery.add_argument(
        "--rate", type=float, default=200.0, help="reports per second (default 200)"
    )
    bench_delivery.add_argument(
        "--seconds", type=float, default=10.0, help="seconds of reports per mode (default 10)"
    )
    bench_delivery.set_defaults(handler=_bench_delivery)
    bench_grpc = bench_commands.add_parser(
        "grpc",
        help="GetCityState latency and rate on a big city, and change fan-out to many watchers",
        description="Measure GetCityState p50/p99 against a health-check baseline, its rate "
        "at concurrent clients against bare grpcio's unary rate in the same run, and the "
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
    bench_grpc.add_argument(
        "--clients", type=int, default=32, help="concurrent callers for the rates (default 32)"
    )
    bench_grpc.add_argument(
        "--seconds", type=float, default=3.0, help="seconds of calls per rate (default 3)"
    )
    bench_grpc.set_defaults(handler=_bench_grpc)
    add_rollout_bench(bench_commands)
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
        description="Images per second of the shipped congestion model (or --model) at its "
        "card's input size: ONNX Runtime runs the ONNX itself, torch eager the same "
        "architecture; batch 1, 4 and 8 on frames of the shipped clip, and their ratio. "
        "Needs the train extra (torch).",
    )
    bench_classifier.add_argument("--json", action="store_true", help="print one JSON line")
    bench_classifier.add_argument("--model", type=Path, help="ONNX with its card (default shipped)")
    bench_classifier.add_argument(
        "--width",
        type=int,
        help="input width (default the card's; another size benches the "
        "architecture exported at that size)",
    )
    bench_classifier.add_argument("--height", type=int, help="input height (default the card's)")
    bench_classifier.add_argument(
        "--seconds", type=float, default=2.0, help="least seconds timed per figure"
    )
    bench_classifier.set_defaults(handler=_bench_classifier)
    _add_detector_bench(bench_commands)
