"""The labelled multi-camera set: `dataset check`, `models evaluate-loco`, `models explain`."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from roadsense.cli.output import print_figures
from roadsense.core.errors import ConfigError, FootageError

SHIPPED_SET = Path("models/data/footage")


def _dataset_check(args: argparse.Namespace) -> int:
    from roadsense.models.footage.multicamera import read_labelled_set

    data = read_labelled_set(args.data)
    if args.medians is not None:
        _write_medians(data, args.medians)
    frames: Counter[str] = Counter()
    for item in data.ranges:
        frames[item.label] += item.last_frame - item.first_frame + 1
    return print_figures(
        {
            "folder": str(args.data),
            "cameras": len(data.cameras),
            "clips": len(data.clips),
            "ranges": len(data.ranges),
            "labelled_frames": dict(frames),
            "labelled_by": data.comments["labelled_by"],
            "composites": dict(Counter(c.label for c in data.composites)),
        },
        args.json,
    )


def _write_medians(data: Any, out: Path) -> None:
    """The region-cropped median of every clip as PNG, to judge which may be composites."""
    import cv2

    from roadsense.core.roi import crop_roi
    from roadsense.models.footage.multicamera import median_background

    out.mkdir(parents=True, exist_ok=True)
    for file, clip in sorted(data.clips.items()):
        crop = crop_roi(median_background(data.root / file), data.cameras[clip.camera].roi)
        target = out / f"{Path(file).stem}.median.png"
        if not cv2.imwrite(str(target), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
            raise FootageError(f"cannot write {target}")


def add_dataset_check(dataset_commands: Any) -> None:
    """`dataset check`."""
    check = dataset_commands.add_parser(
        "check",
        help="check a labelled multi-camera set (cameras.csv, clips.csv, labels.csv)",
        description="Read the cameras (each with its region of interest), the clips and the "
        "hand-labelled frame ranges, and refuse any problem with file:line: an unknown "
        "level, overlapping ranges, a range past the end of its clip, a clip whose camera "
        "has no region, a clip not listed, a labels file that does not say who made it.",
    )
    check.add_argument(
        "--data", type=Path, default=SHIPPED_SET, help=f"set folder (default {SHIPPED_SET})"
    )
    check.add_argument(
        "--medians",
        type=Path,
        metavar="DIR",
        help="also write every clip's temporal median, cropped to its region, as PNG into "
        "DIR: look at them to choose composites (composites.csv)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON line")
    check.set_defaults(handler=_dataset_check)


def _dataset_agreement(args: argparse.Namespace) -> int:
    import json

    from roadsense.models.congestion_labels import CONGESTION_LABELS
    from roadsense.models.footage.agreement import agreement, read_second_labels, table
    from roadsense.models.footage.multicamera import read_labelled_set

    data = read_labelled_set(args.data)
    second, comments = read_second_labels(args.second, data, CONGESTION_LABELS)
    report = {
        "first": {"file": str(args.data / "labels.csv"), **data.comments},
        "second": {"file": str(args.second), **comments},
        **agreement(data, second, CONGESTION_LABELS),
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    print(f"first:  {report['first']['labelled_by']}")
    print(f"second: {report['second']['labelled_by']}")
    print("\n".join(table(report)))
    print(
        f"all {report['frames_compared']} frames together: agreement "
        f"{report['pooled_agreement']:.3f}, Cohen's kappa {report['cohen_kappa']:.3f} "
        f"(linear weights {report['cohen_kappa_linear']:.3f})"
    )
    return 0


def add_dataset_agreement(dataset_commands: Any) -> None:
    """`dataset agreement`."""
    command = dataset_commands.add_parser(
        "agreement",
        help="how far a second labeller agrees with the set's labels",
        description="Compare a second label file (labels.csv format, with '# labelled_by:' "
        "and '# method:' comments, checked as labels.csv is) with the set's labels on "
        "every frame both label: per camera the share labelled alike and the share two or "
        "more levels apart, their camera means, and Cohen's kappa (plain and linearly "
        "weighted) over all compared frames.",
    )
    command.add_argument(
        "--data", type=Path, default=SHIPPED_SET, help=f"set folder (default {SHIPPED_SET})"
    )
    command.add_argument(
        "--second", type=Path, required=True, help="the second labeller's label file"
    )
    command.add_argument("--json", action="store_true", help="print one JSON line")
    command.set_defaults(handler=_dataset_agreement)


def _lite_settings(args: argparse.Namespace) -> Any:
    from roadsense.models.training.congestion.lite_train import LiteSettings

    copies = getattr(args, "composite_copies", 0)
    if copies < 0:
        raise ConfigError(f"--composite-copies must be 0 or more, got {copies}")
    return LiteSettings(
        width=args.width or 224,
        height=args.height or 160,
        per_clip=args.per_clip,
        composite_copies=copies,
        pooling=getattr(args, "pooling", None) or LiteSettings.pooling,
        weighting=getattr(args, "weighting", None) or LiteSettings.weighting,
    )


def _evaluate_loco(args: argparse.Namespace) -> int:
    import json

    from roadsense.models.training.congestion.lite_train import evaluate_loco

    report = evaluate_loco(
        args.data,
        _lite_settings(args),
        baseline=args.baseline,
        baseline_folds=args.baseline_folds,
        adapt_frames=args.adapt_frames,
        cache=args.features_cache,
        second_labels=args.second_labels,
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    from roadsense.models.loco_report import table

    for key in ("efficientnet_lite0", "mobilenetv3_from_scratch"):
        if key in report:
            section = report[key]
            print(f"{key}: {section['protocol']}")
            print(
                "\n".join(
                    table(
                        section["per_camera"],
                        section["camera_mean"],
                        section.get("camera_mean_interval"),
                    )
                )
            )
            pooled = section.get("pooled")
            if pooled:
                figures = {k: v for k, v in pooled.items() if k != "confusion"}
                print(f"all held-out frames together: {figures}")
            for row in section.get("uncertain_floors", []):
                print(
                    f"uncertain below {row['floor']}: {row['reported']:.3f} of a camera's "
                    f"frames reported, accuracy {row['accuracy_reported']:.3f} and gross "
                    f"error {row['gross_error_reported']:.3f} on them, "
                    f"{row['wrong_made_uncertain']:.3f} of its wrong frames made uncertain "
                    "(camera means)"
                )
    second = report["efficientnet_lite0"].get("second_labeller")
    if second:
        print(f"on the frames of {second['labels_file']}: {second['camera_mean']} (camera means)")
    if "adapt" in report:
        print(f"adapting to a camera's first frames: {report['adapt']}")
    return 0


def train_from_set(args: argparse.Namespace) -> int:
    """`train congestion --data SET`: the EfficientNet-Lite0 classifier."""
    import json

    from roadsense.models.training.congestion.lite_train import train_lite

    loco = json.loads(args.loco_report.read_text(encoding="utf-8")) if args.loco_report else None
    path = train_lite(
        args.data,
        args.out,
        _lite_settings(args),
        name=args.name,
        version=args.version,
        loco=loco,
        cache=args.features_cache,
    )
    return print_figures({"model": str(path)}, args.json)


def adapt_from_images(args: argparse.Namespace) -> int:
    """`train congestion --adapt MODEL --images DIR`."""
    from roadsense.models.training.congestion.adapt import adapt_model

    path = adapt_model(
        args.adapt,
        args.images,
        args.out,
        name=args.name,
        version=None if args.version == "1.0.0" else args.version,
        roi=_roi(args.roi),
    )
    return print_figures({"model": str(path)}, args.json)


def add_set_training_options(congestion: Any) -> None:
    """The options of `train congestion` for a labelled multi-camera set."""
    congestion.add_argument(
        "--data",
        type=Path,
        help="a labelled multi-camera set (cameras.csv, clips.csv, labels.csv): train the "
        "EfficientNet-Lite0 classifier (frozen backbone, linear head, temperature) instead",
    )
    congestion.add_argument(
        "--loco-report",
        type=Path,
        help="with --data: the JSON of `models evaluate-loco --out` to keep in the card",
    )
    congestion.add_argument(
        "--features-cache", type=Path, help="with --data: keep/reuse the backbone features"
    )
    congestion.add_argument(
        "--per-clip", type=int, default=48, help="with --data: frames per clip (default 48)"
    )
    _composite_argument(congestion)
    congestion.add_argument(
        "--adapt",
        type=Path,
        metavar="MODEL",
        help="fine-tune this EfficientNet-Lite0 model's head on --images (a few dozen "
        "labelled frames of one new camera) and export the adapted model to --out",
    )
    congestion.add_argument(
        "--roi", help="with --adapt: x,y,width,height fractions to crop --images to"
    )


def _composite_argument(parser: Any) -> None:
    parser.add_argument(
        "--pooling",
        choices=("last", "stages"),
        help="what the head reads: the last convolution's average (1280 features) or also "
        "the averages of the backbone's stage ends (2024); default: the shipped recipe's",
    )
    parser.add_argument(
        "--weighting",
        choices=("class", "camera-class"),
        help="what weighs the same in the head's fit: each level, or each (camera, level) "
        "pair; default: the shipped recipe's (camera-class)",
    )
    parser.add_argument(
        "--composite-copies",
        type=int,
        default=0,
        help="train on each composite of composites.csv N times, each with its own "
        "augmented views (never scored; default 0: none, the shipped recipe)",
    )


def add_loco_command(models_commands: Any) -> None:
    """`models evaluate-loco`."""
    loco = models_commands.add_parser(
        "evaluate-loco",
        help="leave-one-camera-out evaluation on a labelled multi-camera set",
        description="Hold out every camera in turn: choose the head (family, L2) and the "
        "temperature by camera-grouped validation of the other cameras only, fit the head "
        "on them and score the held-out camera (accuracy, gross error rate: two or more "
        "levels off, macro-F1 over the classes present, confusion, ECE); per camera and "
        "the camera mean. --baseline adds MobileNetV3-Small trained from scratch under "
        "k folds by camera. Needs the train extra (torch).",
    )
    loco.add_argument(
        "--data", type=Path, default=SHIPPED_SET, help=f"set folder (default {SHIPPED_SET})"
    )
    loco.add_argument("--per-clip", type=int, default=48, help="frames per clip (default 48)")
    loco.add_argument("--width", type=int, default=224, help="input width (default 224)")
    loco.add_argument("--height", type=int, default=160, help="input height (default 160)")
    loco.add_argument(
        "--baseline", action="store_true", help="also the from-scratch MobileNetV3 baseline"
    )
    loco.add_argument(
        "--baseline-folds", type=int, default=5, help="camera folds of the baseline (default 5)"
    )
    loco.add_argument(
        "--adapt-frames",
        type=int,
        default=0,
        help="also adapt each fold's head to the held-out camera's first N frames and "
        "score its later frames before and after (e.g. 30)",
    )
    loco.add_argument("--features-cache", type=Path, help="keep/reuse the backbone features")
    loco.add_argument(
        "--second-labels",
        type=Path,
        metavar="FILE",
        help="also score each held-out camera on the frames of a second labeller's label file "
        "(labels.csv format): against those labels, and where both labellers agree",
    )
    _composite_argument(loco)
    loco.add_argument("--out", type=Path, help="write the whole report as JSON here")
    loco.add_argument("--json", action="store_true", help="print one JSON line")
    loco.set_defaults(handler=_evaluate_loco)


def _roi(text: str | None) -> Any:
    if not text:
        return None
    from roadsense.core.roi import check_roi

    try:
        x, y, w, h = (float(v) for v in text.split(","))
        return check_roi((x, y, w, h))
    except ValueError as err:
        raise SystemExit(f"roadsense: --roi must be x,y,width,height fractions: {err}") from None


def _explain(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from roadsense.core.roi import crop_roi
    from roadsense.edge.backends.classifier import create_classifier
    from roadsense.models.explain import heat_on_frame, overlay

    read = cv2.imread(str(args.image))
    if read is None:
        raise SystemExit(f"roadsense: {args.image}: not an image OpenCV can read")
    frame = np.asarray(read, np.uint8)
    roi = _roi(args.roi)
    classifier = create_classifier(args.backend, args.model)
    try:
        probabilities, maps = classifier.explain([crop_roi(frame, roi)])
    finally:
        classifier.close()
    level = classifier.labels[int(probabilities[0].argmax())]
    confidence = float(probabilities[0].max())
    heat = heat_on_frame(maps[0], frame.shape, roi)
    picture = overlay(frame, heat, roi, f"{level} {confidence:.2f}")
    if not cv2.imwrite(str(args.out), picture):
        raise SystemExit(f"roadsense: cannot write {args.out}")
    figures = {
        "out": str(args.out),
        "level": level,
        "confidence": round(confidence, 4),
        "probabilities": dict(
            zip(classifier.labels, (round(float(p), 4) for p in probabilities[0]), strict=True)
        ),
    }
    return print_figures(figures, args.json)


def add_explain_command(models_commands: Any) -> None:
    """`models explain`."""
    explain = models_commands.add_parser(
        "explain",
        help="draw the class activation map of a model's level over an image",
        description="Classify IMAGE (cropped to --roi when given, as the edge does) with the "
        "model's calibrated probabilities and write OUT: the image with the activation map "
        "of the predicted level over it (where the evidence for that level lies), the "
        "region outlined and the level captioned. Needs a model whose card names a "
        "cam_output_name.",
    )
    explain.add_argument("--model", type=Path, required=True, help="ONNX with its card")
    explain.add_argument("--image", type=Path, required=True, help="a JPEG/PNG frame")
    explain.add_argument("--out", type=Path, required=True, help="PNG/JPEG to write")
    explain.add_argument("--roi", help="x,y,width,height fractions of the frame (the camera's)")
    explain.add_argument(
        "--backend", default="onnxruntime", help="classifier backend (default onnxruntime)"
    )
    explain.add_argument("--json", action="store_true", help="print one JSON line")
    explain.set_defaults(handler=_explain)
