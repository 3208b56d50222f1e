"""``roadsense models evaluate-counts``: the measurement against hand-drawn boxes and labels.

Counts, boxes and stopped vehicles are scored on the CVAT-boxed clips of the footage,
leave one camera out (``roadsense.models.detection.counts``: score and support thresholds
chosen on the other camera); counts alone on the frames counted by hand (``counts.csv``:
the cameras without boxes, by the detector card's thresholds, in each camera's region of
interest as the levels' meter); with ``--levels`` the measured level is scored leave one
camera out against both labellers of the 21 cameras (``roadsense.models.detection.levels``).
The detector runs as on the edge: the same backend, the same meter (support, zone, tracker,
stopped rule), the same sampling.
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadsense.cli.models.evaluate_footage import clip_fps, hand_counts, rounded, sampled_frames
from roadsense.core.errors import RoadSenseError
from roadsense.models.shipped import DEFAULT_DETECTOR

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import supervision as sv

    from roadsense.edge.backends.detector import Detector
    from roadsense.models.detection.counts import ScoredFrame
    from roadsense.models.detection.cvat import FrameTruth
    from roadsense.models.detection.support import SupportThresholds

FOOTAGE = Path("models/data/footage")
"""The labelled footage of the source tree (its clips are not installed with the package)."""
LOW_SCORE = 0.03
"""Boxes are kept down to this score once; each setting's meter counts some of them."""
STOPPED_HISTORY_S = 2.0


@dataclass(frozen=True)
class _BoxedSample:
    """One sample of a boxed clip: every box the detector found (down to ``LOW_SCORE``)."""

    t_s: float
    found: sv.Detections
    shape: tuple[int, int]
    truth: FrameTruth


@dataclass(frozen=True)
class _BoxedClip:
    samples: list[_BoxedSample]
    scoring_zone: npt.NDArray[np.bool_]


def _detect_clip(detector: Detector, clip: Path, sample_hz: float) -> _BoxedClip:
    """Every sampled frame of a boxed clip: the detector's boxes, and the truth."""
    from roadsense.models.detection.cvat import parse_cvat
    from roadsense.models.detection.zone import learn_zone, zone_mask

    truth, shape = parse_cvat(clip.with_suffix(".cvat.xml"))
    # Score counts where the annotators boxed: the zone their boxes cover.
    mask = zone_mask(learn_zone([t.xyxy for t in truth.values()], shape), shape)
    samples: list[_BoxedSample] = []
    frames = list(sampled_frames(clip.with_suffix(".mp4"), sample_hz))
    for start in range(0, len(frames), detector.max_batch):
        batch = frames[start : start + detector.max_batch]
        for (index, t_s, image), found in zip(
            batch, detector.detect([b[2] for b in batch]), strict=True
        ):
            samples.append(_BoxedSample(t_s, found, image.shape[:2], truth[index]))
    return _BoxedClip(samples, mask)


def _replay(clip: _BoxedClip, sample_hz: float, setting: SupportThresholds) -> list[ScoredFrame]:
    """The clip's samples through a meter counting by ``setting``, as a device would."""
    from roadsense.edge.measure.window import CameraMeter
    from roadsense.models.detection.counts import ScoredFrame
    from roadsense.models.detection.zone import in_zone

    meter = CameraMeter(sample_hz, support=setting)
    frames = []
    for s in clip.samples:
        sample = meter.observe(s.t_s, s.found, s.shape)
        frames.append(
            ScoredFrame(
                xyxy=sample.xyxy,
                in_zone=in_zone(sample.xyxy, clip.scoring_zone),
                stopped=sample.stopped,
                truth=s.truth,
                stopped_known=s.t_s >= STOPPED_HISTORY_S,
            )
        )
    return frames


def _counts(args: argparse.Namespace, detector: Detector) -> dict[str, Any]:
    from roadsense.models.detection.counts import (
        CountScores,
        camera_mean,
        choose,
        leave_one_camera_out,
        score_camera,
    )
    from roadsense.models.footage.multicamera import read_labelled_set

    data = read_labelled_set(args.footage)
    boxed = sorted(args.footage.glob("*.cvat.xml"))
    if not boxed:
        raise RoadSenseError(f"{args.footage}: no CVAT-boxed clips (*.cvat.xml)")
    cameras: dict[str, list[_BoxedClip]] = {}
    for xml in boxed:
        clip = xml.name.removesuffix(".cvat.xml")
        camera = data.clips[f"{clip}.mp4"].camera
        cameras.setdefault(camera, []).append(
            _detect_clip(detector, xml.parent / clip, args.sample_hz)
        )

    @functools.cache
    def score(camera: str, setting: SupportThresholds) -> CountScores:
        return score_camera(
            [f for clip in cameras[camera] for f in _replay(clip, args.sample_hz, setting)]
        )

    names = sorted(cameras)
    folds = leave_one_camera_out(score, names)
    on_all = choose(score, names)
    fields = ("count_error", "recall_30", "recall_50", "precision_30", "precision_50",
              "stopped_agreement")  # fmt: skip
    return {
        "detector": detector.version,
        "sample_hz": args.sample_hz,
        "cameras": [
            {
                "camera": f.camera,
                "threshold": f.threshold,
                "support": f.support,
                **rounded(asdict(f.scores)),
            }
            for f in folds
        ],
        "camera_mean": {name: round(camera_mean(folds, name), 3) for name in fields},
        "chosen_on_all_cameras": {"threshold": on_all.threshold, "support": on_all.support},
    }


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
        meter = CameraMeter(
            args.sample_hz,
            zone=[(x, y), (x + w, y), (x + w, y + h), (x, y + h)],
            support=detector.card.thresholds,
        )
        mine = samples.setdefault(file, [])
        fps[file] = clip_fps(args.footage / file)
        frames = list(sampled_frames(args.footage / file, args.sample_hz))
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
            hand = hand_counts(args, detector)
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
    chosen = counts["chosen_on_all_cameras"]
    print(f"  chosen on all boxed cameras: threshold {chosen['threshold']:g}, support "
          f"{chosen['support']}")  # fmt: skip
    if "hand_counts" in report:
        hand = report["hand_counts"]
        means, sure = hand["all_frames"]["camera_mean"], hand["certain_frames"]["camera_mean"]
        print(
            f"counted by hand ({hand['frames']} frames, {len(hand['all_frames']['cameras'])} "
            f"cameras, threshold {hand['threshold']:g}, support {hand['support']}): count "
            f"error {means['count_error']:.3f}, bias {means['bias']:+.3f}; frames counted "
            f"with certainty: {sure['count_error']:.3f}, {sure['bias']:+.3f}"
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
        if "boxes" in hand:
            boxes = hand["boxes"]
            print(
                f"boxed by hand ({boxes['frames']} frames, {boxes['boxes']} boxes, "
                f"{boxes['uncertain']} uncertain): recall@0.3 {boxes['pooled']['recall_30']:.3f}"
                f", @0.5 {boxes['pooled']['recall_50']:.3f}, precision@0.3 "
                f"{boxes['pooled']['precision_30']:.3f} (all boxes pooled; camera mean recall@0.3 "
                f"{boxes['camera_mean']['recall_30']:.3f})"
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
        "and support thresholds chosen on the others; the count error on the frames counted "
        "by hand (counts.csv) of the other cameras; with --levels, the measured level against both "
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
