"""The congestion CNN: `roadsense dataset …`, `models …` and `train congestion`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from roadsense.cli.models.camera_set import (
    adapt_from_images,
    add_dataset_agreement,
    add_dataset_check,
    add_explain_command,
    add_loco_command,
    add_set_training_options,
    train_from_set,
)
from roadsense.cli.models.detector_training import add_dataset_boxes
from roadsense.cli.models.evaluate_counts import add_evaluate_counts
from roadsense.cli.models.model_registry import add_registry_commands
from roadsense.cli.output import print_figures


def _train_congestion(args: argparse.Namespace) -> int:
    if args.data is not None:
        return train_from_set(args)
    if args.adapt is not None and args.images is not None:
        return adapt_from_images(args)
    if args.images is None:
        print("roadsense: train congestion needs --images DIR or --data SET", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.progress import Progress

    from roadsense.models.image_sets import (
        class_names,
        dataset_summary,
        evaluation_classes,
        load_images,
    )
    from roadsense.models.training.congestion.train import CnnSettings, export_cnn, train_cnn

    width, height = args.width or 160, args.height or 128
    settings = CnnSettings(width=width, height=height, epochs=args.epochs, seed=args.seed)
    if min(width, height) < 32 or args.epochs < 1:
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
    extra = dataset_summary(args.images)
    for name, folder in (("holdout", args.holdout), ("unseen_camera", args.unseen)):
        if folder is not None:
            extra[name] = dataset_summary(folder)
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


def _build_engine(args: argparse.Namespace) -> int:
    from roadsense.edge.backends.engines import EngineCard, TensorRtOptions, ensure_engine
    from roadsense.edge.backends.tensorrt import cuda_runtime
    from roadsense.models.card import card_path_for, load_card
    from roadsense.models.detection.card import load_detector_card

    try:
        kind = json.loads(card_path_for(args.model).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None  # loading the classifier's card names the problem
    card: EngineCard = (
        load_detector_card(args.model) if kind == "detector" else load_card(args.model)
    )
    options = TensorRtOptions(
        precision=args.precision,
        engine_dir=args.engine_dir,
        calibration_images=args.calibration_images,
    )
    path, built = ensure_engine(args.model, card, options, cuda_runtime())
    return print_figures(
        {"engine": str(path), "built": built, "precision": args.precision}, args.json
    )


def _evaluate_model(args: argparse.Namespace) -> int:
    from roadsense.edge.backends.classifier import create_classifier
    from roadsense.models.congestion_eval import evaluate_model, record_evaluation

    options: dict[str, object] = {}
    if args.threads:
        options["intra_op_threads"] = args.threads
    classifier = create_classifier(args.backend, args.model, options)
    try:
        report = evaluate_model(classifier, args.model, args.images, args.backend)
    finally:
        classifier.close()
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


def add_dataset_commands(commands: Any) -> None:
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
    add_dataset_check(dataset_commands)
    add_dataset_agreement(dataset_commands)
    add_dataset_boxes(dataset_commands)


def add_models_commands(commands: Any) -> None:
    models = commands.add_parser(
        "models",
        help="model artifacts and the cloud's registry of signed models",
        description="Model artifacts on this machine; publish and list signed models.",
    )
    models_commands = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    build = models_commands.add_parser(
        "build-engine",
        help="build (or find) the TensorRT engine of an ONNX model for this GPU",
        description="Parse the ONNX, build an fp32/fp16/int8 engine with the card's batch "
        "range as optimisation profile, and cache it under a key of (ONNX sha256, TensorRT "
        "version, GPU and compute capability, precision, batch range). An engine already "
        "cached for exactly that key is reused. The congestion classifier or the vehicle "
        "detector (its card says which; the detector takes fp32 or fp16). Needs TensorRT and "
        "pycuda.",
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
    add_loco_command(models_commands)
    add_evaluate_counts(models_commands)
    add_explain_command(models_commands)
    add_registry_commands(models_commands)


def add_congestion_training(train_commands: Any) -> None:
    """`train congestion`."""
    congestion = train_commands.add_parser(
        "congestion",
        help="train the congestion CNN on class folders of images, evaluate, export ONNX",
        description="Train MobileNetV3-Small on DIR/<label>/*.png|jpg (early stopping on a "
        "stratified validation slice), report accuracy, macro-F1 and the confusion matrix "
        "on that slice and on --holdout, export ONNX (checked against torch to 1e-4) with "
        "its card.",
    )
    congestion.add_argument("--images", type=Path, help="class folders")
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
    congestion.add_argument("--width", type=int, help="input width (default 160; with --data 224)")
    congestion.add_argument(
        "--height", type=int, help="input height (default 128; with --data 160)"
    )
    congestion.add_argument("--epochs", type=int, default=10, help="most epochs (default 10)")
    congestion.add_argument("--seed", type=int, default=0, help="random seed")
    congestion.add_argument("--json", action="store_true", help="print one JSON line")
    add_set_training_options(congestion)
    congestion.set_defaults(handler=_train_congestion)
