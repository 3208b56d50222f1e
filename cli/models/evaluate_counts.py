"""``roadsense models evaluate-counts``: the measurement against hand-drawn boxes and labels.

Counts, boxes and stopped vehicles are scored on the CVAT-boxed clips of the footage,
leave one camera out (``roadsense.models.detection.counts``); counts alone on the frames
counted by hand (``counts.csv``: the cameras without boxes, at the detector's own
threshold, in each camera's region of interest as the levels' meter); with ``--levels`` the
measured level is scored leave one camera out against both labellers of the 21 cameras
(``roadsense.models.detection.levels``). The detector runs as on the edge: the same
backend, the same meter (zone, tracker, stopped rule).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadsense.core.errors import RoadSenseError
from roadsense.models.shipped import DEFAULT_DETECTOR

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from roadsense.edge.backends.detector import Detector
    from roadsense.models.detection.counts import ScoredFrame

FOOTAGE = Path("models/data/footage")
"""The labelled footage of the source tree (its clips are not installed with the package)."""
LOW_SCORE = 0.05
"""Boxes are kept down to this score once, then each fold's threshold filters them."""
STOPPED_HISTORY_S = 2.0


def _clip_fps(clip: Path) -> float:
    """The clip's frame rate as its container states it (25 when it states none)."""
    import cv2

    capture = cv2.VideoCapture(str(clip))
    try:
        return float(capture.get(cv2.CAP_PROP_FPS) or 25.0)
    finally:
        capture.release()


def _frames(clip: Path, sample_hz: float) -> Iterator[tuple[int, float, npt.NDArray[np.uint8]]]:
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(str(clip))
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 25.0)
    step = max(1, round(fps / sample_hz))
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if index % step == 0:
                yield index, index / fps, np.asarray(frame, dtype=np.uint8)
            index += 1
    finally:
        capture.release()


def _measure_clip(detector: Detector, clip: Path, sample_hz: float) -> list[ScoredFrame]:
    """Every sampled frame of a boxed clip: boxes (all scores), stopped flags, truth."""

    from roadsense.edge.measure.window import CameraMeter
    from roadsense.models.detection.counts import ScoredFrame
    from roadsense.models.detection.cvat import parse_cvat
    from roadsense.models.detection.zone import in_zone, learn_zone, zone_mask

    truth, shape = parse_cvat(clip.with_suffix(".cvat.xml"))
    # Score counts where the annotators boxed: the zone their boxes cover.
    mask = zone_mask(learn_zone([t.xyxy for t in truth.values()], shape), shape)
    meter = CameraMeter(sample_hz)
    frames = []
    batch: list[tuple[int, float, npt.NDArray[np.uint8]]] = []

    def flush() -> None:
        for (index, t_s, image), found in zip(
            batch, detector.detect([b[2] for b in batch]), strict=True
        ):
            sample = meter.observe(t_s, found, image.shape[:2])
            # The meter's whole-frame zone keeps every box, in the detector's order.
            frames.append(
                ScoredFrame(
                    xyxy=sample.xyxy,
                    scores=sample.scores,
                    in_zone=in_zone(sample.xyxy, mask),
                    stopped=sample.stopped,
                    truth=truth[index],
                    stopped_known=t_s >= STOPPED_HISTORY_S,
                )
            )
        batch.clear()

    for item in _frames(clip.with_suffix(".mp4"), sample_hz):
        batch.append(item)
        if len(batch) == detector.max_batch:
            flush()
    if batch:
        flush()
    return frames


def _counts(args: argparse.Namespace, detector: Detector) -> dict[str, Any]:
    from roadsense.models.detection.counts import camera_mean, leave_one_camera_out
    from roadsense.models.footage.multicamera import read_labelled_set

    data = read_labelled_set(args.footage)
    boxed = sorted(args.footage.glob("*.cvat.xml"))
    if not boxed:
        raise RoadSenseError(f"{args.footage}: no CVAT-boxed clips (*.cvat.xml)")
    cameras: dict[str, list[ScoredFrame]] = {}
    for xml in boxed:
        clip = xml.name.removesuffix(".cvat.xml")
        camera = data.clips[f"{clip}.mp4"].camera
        cameras.setdefault(camera, []).extend(
            _measure_clip(detector, xml.parent / clip, args.sample_hz)
        )
    folds = leave_one_camera_out(cameras)
    fields = ("count_error", "recall_30", "recall_50", "precision_30", "precision_50",
              "stopped_agreement")  # fmt: skip
    return {
        "detector": detector.version,
        "sample_hz": args.sample_hz,
        "cameras": [
            {"camera": f.camera, "threshold": f.threshold, **_rounded(asdict(f.scores))}
            for f in folds
        ],
        "camera_mean": {name: round(camera_mean(folds, name), 3) for name in fields},
    }


def _counted_frames(clip: Path, wanted: set[int]) -> dict[int, npt.NDArray[np.uint8]]:
    """The decoded frames of ``clip`` whose 0-based index is in ``wanted``."""
    import cv2
    import numpy as np

    capture = cv2.VideoCapture(str(clip))
    found: dict[int, npt.NDArray[np.uint8]] = {}
    index = 0
    try:
        while len(found) < len(wanted):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                found[index] = np.asarray(frame, dtype=np.uint8)
            index += 1
    finally:
        capture.release()
    missing = sorted(wanted - set(found))
    if missing:
        raise RoadSenseError(f"{clip}: cannot decode frame(s) {missing} counted by hand")
    return found


def _hand_counts(args: argparse.Namespace, detector: Detector) -> dict[str, Any] | None:
    """The count error on the frames counted by hand; None when the set has no counts.

    With a second counter's counts of the same frames, also the detector against them and
    the two counters against each other (the second's difference from the first)."""
    import numpy as np

    from roadsense.models.detection.counts import hand_count_scores
    from roadsense.models.detection.zone import in_zone, zone_mask
    from roadsense.models.footage.multicamera import (
        COUNTS_FILE,
        SECOND_COUNTS_FILE,
        HandCount,
        read_hand_counts,
        read_labelled_set,
    )

    path = args.footage / COUNTS_FILE
    if not path.is_file():
        return None
    data = read_labelled_set(args.footage)
    counts = read_hand_counts(path, data.clips)
    threshold = detector.card.score_threshold
    found: dict[tuple[str, int], int] = {}
    for file in sorted({c.file for c in counts}):
        mine = [c for c in counts if c.file == file]
        images = _counted_frames(args.footage / file, {c.frame for c in mine})
        x, y, w, h = data.cameras[mine[0].camera].roi
        for count, boxes in zip(
            mine, detector.detect([images[c.frame] for c in mine]), strict=True
        ):
            shape = images[count.frame].shape[:2]
            mask = zone_mask([(x, y), (x + w, y), (x + w, y + h), (x, y + h)], shape)
            kept = np.asarray(boxes.confidence) >= threshold
            found[file, count.frame] = int(in_zone(boxes.xyxy[kept].astype(np.float32), mask).sum())

    def summary(pairs: list[tuple[HandCount, int]]) -> dict[str, Any]:
        per_camera: dict[str, list[tuple[int, int]]] = {}
        for count, other in pairs:
            per_camera.setdefault(count.camera, []).append((count.vehicles, other))
        rows = [hand_count_scores(camera, p) for camera, p in sorted(per_camera.items())]
        return {
            "cameras": [_rounded(asdict(r)) for r in rows],
            "camera_mean": {
                name: round(float(np.nanmean([getattr(r, name) for r in rows])), 3)
                for name in ("count_error", "bias")
            },
        }

    def scored(truth: list[HandCount]) -> dict[str, Any]:
        pairs = [(c, found[c.file, c.frame]) for c in truth]
        return {
            "all_frames": summary(pairs),
            "certain_frames": summary([(c, n) for c, n in pairs if not c.uncertain]),
        }

    report: dict[str, Any] = {"threshold": threshold, "frames": len(counts), **scored(counts)}
    second_path = args.footage / SECOND_COUNTS_FILE
    if second_path.is_file():
        second = {(c.file, c.frame): c for c in read_hand_counts(second_path, data.clips)}
        if set(second) != set(found):
            raise RoadSenseError(
                f"{second_path}: counts {len(second)} frames, {COUNTS_FILE} {len(found)}; a "
                "second counter counts the same frames"
            )
        both = [(c, second[c.file, c.frame]) for c in counts]
        report["second_counter"] = scored([s for _, s in both])
        report["counters"] = {
            "all_frames": summary([(c, s.vehicles) for c, s in both]),
            "certain_frames": summary(
                [(c, s.vehicles) for c, s in both if not (c.uncertain or s.uncertain)]
            ),
        }
    return report


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) and not math.isnan(v) else v
            for k, v in values.items()}  # fmt: skip


def _levels(args: argparse.Namespace, detector: Detector) -> dict[str, Any]:
    from roadsense.edge.measure.window import CameraMeter
    from roadsense.models.detection.levels import LabelledMeasure, Sampled, loco, window_measure
    from roadsense.models.detection.rule import LEVELS
    from roadsense.models.footage.agreement import read_second_labels
    from roadsense.models.footage.multicamera import read_labelled_set

    data = read_labelled_set(args.footage)
    second, _ = read_second_labels(args.footage / "labels-second.csv", data, LEVELS)
    samples: dict[str, list[Sampled]] = {}
    fps: dict[str, float] = {}
    for file, clip in data.clips.items():
        x, y, w, h = data.cameras[clip.camera].roi
        meter = CameraMeter(args.sample_hz, zone=[(x, y), (x + w, y), (x + w, y + h), (x, y + h)])
        mine = samples.setdefault(file, [])
        fps[file] = _clip_fps(args.footage / file)
        frames = list(_frames(args.footage / file, args.sample_hz))
        for start in range(0, len(frames), detector.max_batch):
            batch = frames[start : start + detector.max_batch]
            for (index, t_s, image), found in zip(
                batch, detector.detect([b[2] for b in batch]), strict=True
            ):
                s = meter.observe(t_s, found, image.shape[:2])
                mine.append(Sampled(index, t_s, s.vehicles, int(s.stopped.sum()), s.occupancy))

    def labelled(ranges: Any) -> list[LabelledMeasure]:
        return [
            LabelledMeasure(
                data.clips[r.file].camera,
                r.file,
                frame,
                r.label,
                window_measure(samples[r.file], frame, frame / fps[r.file]),
            )
            for r in ranges
            for frame in range(r.first_frame, r.last_frame + 1)
        ]

    result = loco(labelled(data.ranges), labelled(second))
    return {
        "cameras": [
            {
                "camera": r.camera,
                "agreement": round(r.first.agreement, 3),
                "gross": round(r.first.gross, 3),
                "agreement_second": round(r.second.agreement, 3) if r.second else None,
                "gross_second": round(r.second.gross, 3) if r.second else None,
            }
            for r in result.rows
        ],
        "camera_mean": {k: round(v, 3) for k, v in result.means.items()},
        "interval_95": {k: [round(a, 3), round(b, 3)] for k, (a, b) in result.intervals.items()},
        "fold_median_thresholds": asdict(result.median_thresholds),
    }


def _scores_line(name: str, scores: dict[str, Any]) -> str:
    return (
        f"{name:24s} count error {scores['count_error']:.3f}  recall@0.3 "
        f"{scores['recall_30']:.3f}  @0.5 {scores['recall_50']:.3f}  precision@0.3 "
        f"{scores['precision_30']:.3f}  stopped/moving {scores['stopped_agreement']}"
    )


def _evaluate_counts(args: argparse.Namespace) -> int:
    import tempfile

    from roadsense.edge.backends.detector import create_detector
    from roadsense.models.detection.card import parse_input_size, with_input_size

    options: dict[str, object] = {"score_threshold": LOW_SCORE}
    if args.threads:
        options["intra_op_threads"] = args.threads
    with tempfile.TemporaryDirectory(prefix="roadsense-evaluate-") as workdir:
        model = args.model
        if args.input:
            model = with_input_size(model, *parse_input_size(args.input), Path(workdir))
        detector = create_detector(args.backend, model, options)
        try:
            report: dict[str, Any] = {"counts": _counts(args, detector)}
            hand = _hand_counts(args, detector)
            if hand is not None:
                report["hand_counts"] = hand
            if args.levels:
                report["levels"] = _levels(args, detector)
        finally:
            detector.close()
    if args.json:
        print(json.dumps(report))
        return 0
    counts = report["counts"]
    print(f"detector {counts['detector']}, {args.sample_hz:g} samples/s, leave one camera out")
    for row in counts["cameras"]:
        boxes = f"of {row['stopped_boxes']} stopped and {row['moving_boxes']} moving boxes"
        print(f"  {_scores_line(row['camera'], row)} ({boxes})")
    print(f"  {_scores_line('camera mean', counts['camera_mean'])}")
    if "hand_counts" in report:
        hand = report["hand_counts"]
        means, sure = hand["all_frames"]["camera_mean"], hand["certain_frames"]["camera_mean"]
        print(
            f"counted by hand ({hand['frames']} frames, {len(hand['all_frames']['cameras'])} "
            f"cameras, threshold {hand['threshold']:g}): count error {means['count_error']:.3f}, "
            f"bias {means['bias']:+.3f}; frames counted with certainty: "
            f"{sure['count_error']:.3f}, {sure['bias']:+.3f}"
        )
        if "counters" in hand:
            second = hand["second_counter"]["all_frames"]["camera_mean"]
            apart = hand["counters"]["all_frames"]["camera_mean"]
            apart_sure = hand["counters"]["certain_frames"]["camera_mean"]
            print(
                f"against the second counter: count error {second['count_error']:.3f}, bias "
                f"{second['bias']:+.3f}; the two counters apart {apart['count_error']:.3f} "
                f"(frames both counted with certainty: {apart_sure['count_error']:.3f})"
            )
    if "levels" in report:
        means = report["levels"]["camera_mean"]
        print(
            f"levels: agreement {means['agreement']:.3f} (gross {means['gross']:.3f}); with the "
            f"second labeller {means['agreement_second']:.3f} (gross {means['gross_second']:.3f})"
        )
    return 0


def add_evaluate_counts(models_commands: Any) -> None:
    """``roadsense models evaluate-counts``."""
    evaluate = models_commands.add_parser(
        "evaluate-counts",
        help="score the measurement on hand-boxed clips (and levels), leave one camera out",
        description="Per-frame count error, recall and precision at IoU 0.3 and 0.5, and "
        "stopped/moving agreement on the CVAT-boxed clips, each camera scored at the score "
        "threshold chosen on the others; the count error on the frames counted by hand "
        "(counts.csv) of the other cameras; with --levels, the measured level against both "
        "labellers of the 21 cameras.",
    )
    evaluate.add_argument("--model", type=Path, default=DEFAULT_DETECTOR, help="detector ONNX")
    evaluate.add_argument("--backend", default="onnxruntime", help="onnxruntime, tensorrt, auto")
    evaluate.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads")
    evaluate.add_argument(
        "--input",
        metavar="WxH",
        help="run the detector at this input size instead of its card's, e.g. 640 or 512x416 "
        "(multiples of 32): the trade-off against bench detector --sizes",
    )
    evaluate.add_argument(
        "--data", dest="footage", type=Path, default=FOOTAGE, help=f"set folder (default {FOOTAGE})"
    )
    evaluate.add_argument("--sample-hz", type=float, default=5.0, help="samples per second")
    evaluate.add_argument("--levels", action="store_true", help="also score the levels (slower)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=_evaluate_counts)
