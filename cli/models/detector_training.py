"""`roadsense train detector`: fine-tune the vehicle detector on YOLO boxes, export with card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from roadsense.cli.output import print_figures


def _train_detector(args: argparse.Namespace) -> int:
    if args.epochs < 1 or args.size < 64 or args.size % 32:
        print(
            "roadsense: --epochs must be >= 1 and --size a multiple of 32, at least 64",
            file=sys.stderr,
        )
        return 2
    for folder in args.data:
        if not folder.is_dir():
            print(f"roadsense: {folder}: no such folder", file=sys.stderr)
            return 2
    # torch and onnx2torch are the `train` extra: imported only when this command runs.
    from rich.console import Console
    from rich.progress import Progress

    from roadsense.models.shipped import DEFAULT_DETECTOR
    from roadsense.models.training.detector.train import (
        DetectorSettings,
        export_detector,
        fine_tune,
    )

    settings = DetectorSettings(
        size=args.size, epochs=args.epochs, seed=args.seed, threads=args.threads
    )
    val_videos = [v for v in (args.val_videos or "").split(",") if v] or None
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("fine-tuning", total=settings.epochs)

        def progress(epoch: int, epochs: int, f1: float) -> None:
            bar.update(task, completed=epoch, description=f"fine-tuning (validation F1 {f1:.3f})")

        try:
            tuned = fine_tune(
                args.data, settings, val_videos, args.base or DEFAULT_DETECTOR, progress
            )
        except ValueError as err:
            print(f"roadsense: {err}", file=sys.stderr)
            return 2
    path = export_detector(
        tuned, args.out, settings, version=args.version, data_description=args.data_description
    )
    return print_figures(
        {
            "model": str(path),
            "score_threshold": tuned.chosen["threshold"],
            "validation": tuned.chosen,
            "val_videos": tuned.val_videos,
            **tuned.counts,
        },
        args.json,
    )


def _dataset_boxes(args: argparse.Namespace) -> int:
    from roadsense.core.errors import FootageError
    from roadsense.models.footage.training_boxes import export_footage_boxes

    if args.cvat_step < 1:
        print("roadsense: --cvat-step must be at least 1", file=sys.stderr)
        return 2
    exclude = [c for c in (args.exclude or "").split(",") if c]
    try:
        done = export_footage_boxes(
            args.footage, args.out, exclude=exclude, cvat_step=args.cvat_step
        )
    except FootageError as err:
        print(f"roadsense: {err}", file=sys.stderr)
        return 2
    return print_figures(
        {
            "out": str(args.out),
            "images": sum(done.images.values()),
            "boxes": sum(done.boxes.values()),
            "cameras": {c: [done.images[c], done.boxes[c]] for c in sorted(done.images)},
            "excluded": sorted(exclude),
        },
        args.json,
    )


def add_dataset_boxes(dataset_commands: Any) -> None:
    """`dataset boxes`."""
    from roadsense.cli.models.camera_set import SHIPPED_SET
    from roadsense.models.footage.training_boxes import CVAT_STEP

    boxes = dataset_commands.add_parser(
        "boxes",
        help="the footage's hand boxes (boxes.csv, CVAT clips) as a YOLO folder",
        description="Write OUT/images/<camera>_<n>.png and OUT/labels/*.txt (YOLO, one "
        "vehicle class) from every frame boxed by hand in the footage: boxes.csv and every "
        "--cvat-step-th frame of the CVAT clips, greyed outside the area that was boxed. "
        "File names start with the camera, so `train detector` splits by camera; "
        "--exclude leaves out the cameras a model will be tested on.",
    )
    boxes.add_argument(
        "--footage", type=Path, default=SHIPPED_SET, help=f"footage folder (default {SHIPPED_SET})"
    )
    boxes.add_argument("--out", type=Path, required=True, help="output folder")
    boxes.add_argument("--exclude", help="comma-separated cameras to leave out")
    boxes.add_argument(
        "--cvat-step",
        type=int,
        default=CVAT_STEP,
        help=f"every Nth frame of a CVAT clip (default {CVAT_STEP})",
    )
    boxes.add_argument("--json", action="store_true", help="print one JSON line")
    boxes.set_defaults(handler=_dataset_boxes)


def add_detector_training(train_commands: Any) -> None:
    """`train detector`."""
    detector = train_commands.add_parser(
        "detector",
        help="fine-tune the YOLOX vehicle detector on YOLO boxes and export ONNX with its card",
        description="Fine-tune the shipped YOLOX-Nano (backbone frozen) on FOLDER/**/images + "
        "labels (YOLO txt; every box a vehicle) with CCTV-like degradation, holding out whole "
        "source videos (file-name prefix) for validation; export ONNX with a detector card "
        "whose score threshold has the lowest count error on those videos.",
    )
    detector.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="folder of images/ + labels/ (repeat for several, e.g. the stock road views and "
        "`roadsense dataset boxes` of the footage)",
    )
    detector.add_argument("--out", type=Path, required=True, help="output folder")
    detector.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    detector.add_argument(
        "--size", type=int, default=640, help="input size, a multiple of 32 (default 640)"
    )
    detector.add_argument(
        "--val-videos",
        help="comma-separated source videos to validate on (default: a quarter, drawn by seed)",
    )
    detector.add_argument("--version", default="0.1.0", help="model version for the card")
    detector.add_argument(
        "--base", type=Path, help="ONNX to start from (default: the shipped detector)"
    )
    detector.add_argument(
        "--data-description",
        default="",
        help="where the boxes came from, with licence and attribution (for the card)",
    )
    detector.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    detector.add_argument("--seed", type=int, default=0, help="random seed")
    detector.add_argument("--json", action="store_true", help="print one JSON line")
    detector.set_defaults(handler=_train_detector)
