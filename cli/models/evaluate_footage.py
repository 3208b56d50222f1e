"""The footage as a device samples it, and the frames counted by hand scored against it
(for ``roadsense models evaluate-counts``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadsense.core.errors import RoadSenseError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from roadsense.edge.backends.detector import Detector
    from roadsense.models.footage.multicamera import Clip, HandCount

HISTORY_S = 4.0
"""Seconds of samples measured before each frame counted by hand."""


def clip_fps(clip: Path) -> float:
    """The clip's frame rate as its container states it (25 when it states none)."""
    import cv2

    capture = cv2.VideoCapture(str(clip))
    try:
        return float(capture.get(cv2.CAP_PROP_FPS) or 25.0)
    finally:
        capture.release()


def _step(fps: float, sample_hz: float) -> int:
    """Frames between two samples of a device sampling a ``fps`` clip at ``sample_hz``."""
    return max(1, round(fps / sample_hz))


def sampled_frames(
    clip: Path, sample_hz: float
) -> Iterator[tuple[int, float, npt.NDArray[np.uint8]]]:
    """(0-based index, time, frame) of the clip's frames a device sampling at
    ``sample_hz`` takes."""
    from roadsense.models.footage.video import read_frames

    fps = clip_fps(clip)
    step = _step(fps, sample_hz)
    for index, frame in enumerate(read_frames(clip)):
        if index % step == 0:
            yield index, index / fps, frame


def _history(fps: float, frame: int, sample_hz: float) -> list[int]:
    """The frames a device sampling at ``sample_hz`` took in the ``HISTORY_S`` seconds up
    to and including ``frame``, oldest first."""
    first = max(-1, frame - round(HISTORY_S * fps) - 1)
    return list(range(frame, first, -_step(fps, sample_hz)))[::-1]


def _counted_frames(
    clip: Path, wanted: set[int], sample_hz: float
) -> dict[int, list[tuple[float, npt.NDArray[np.uint8]]]]:
    """Each counted frame of ``clip`` (0-based index in ``wanted``) with the samples a
    device took before it: (time, frame) pairs ending with the counted frame."""
    from roadsense.models.footage.video import read_frames_at

    fps = clip_fps(clip)
    histories = {frame: _history(fps, frame, sample_hz) for frame in wanted}
    decoded = read_frames_at(clip, {i for h in histories.values() for i in h})
    return {frame: [(i / fps, decoded[i]) for i in history] for frame, history in histories.items()}


def hand_counts(args: argparse.Namespace, detector: Detector) -> dict[str, Any] | None:
    """The count error on the frames counted by hand; None when the set has no counts.

    Each counted frame is measured as a device sampling at ``--sample-hz`` would have,
    after the samples of the ``HISTORY_S`` seconds before it (the support and the stopped
    rule look back), in the camera's region of interest, by the detector card's thresholds.
    With a second counter's counts of the same frames, also the detector against them and
    the two counters against each other (the second's difference from the first)."""
    import numpy as np

    from roadsense.edge.measure.window import CameraMeter
    from roadsense.models.detection.counts import hand_count_scores
    from roadsense.models.footage.multicamera import (
        COUNTS_FILE,
        SECOND_COUNTS_FILE,
        read_hand_counts,
        read_labelled_set,
    )

    path = args.footage / COUNTS_FILE
    if not path.is_file():
        return None
    data = read_labelled_set(args.footage)
    counts = read_hand_counts(path, data.clips)
    thresholds = detector.card.thresholds
    # The vehicles the meter counted in each counted frame (their boxes).
    measured: dict[tuple[str, int], npt.NDArray[np.float32]] = {}
    for file in sorted({c.file for c in counts}):
        mine = [c for c in counts if c.file == file]
        histories = _counted_frames(args.footage / file, {c.frame for c in mine}, args.sample_hz)
        x, y, w, h = data.cameras[mine[0].camera].roi
        for count in mine:
            samples = histories[count.frame]
            meter = CameraMeter(
                args.sample_hz,
                zone=[(x, y), (x + w, y), (x + w, y + h), (x, y + h)],
                support=thresholds,
            )
            observed = []
            for start in range(0, len(samples), detector.max_batch):
                batch = samples[start : start + detector.max_batch]
                for (t_s, image), boxes in zip(
                    batch, detector.detect([image for _, image in batch]), strict=True
                ):
                    observed.append(meter.observe(t_s, boxes, image.shape[:2]))
            measured[file, count.frame] = observed[-1].xyxy
    found = {key: len(boxes) for key, boxes in measured.items()}

    def summary(pairs: list[tuple[HandCount, int]]) -> dict[str, Any]:
        per_camera: dict[str, list[tuple[int, int]]] = {}
        for count, other in pairs:
            per_camera.setdefault(count.camera, []).append((count.vehicles, other))
        rows = [hand_count_scores(camera, p) for camera, p in sorted(per_camera.items())]
        return {
            "cameras": [rounded(asdict(r)) for r in rows],
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

    report: dict[str, Any] = {
        "threshold": thresholds.threshold,
        "support": thresholds.support,
        "frames": len(counts),
        **scored(counts),
    }
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
    boxed = hand_boxes(args.footage, data.clips, measured, {(c.file, c.frame): c for c in counts})
    if boxed is not None:
        report["boxes"] = boxed
    return report


def hand_boxes(
    footage: Path,
    clips: dict[str, Clip],
    measured: dict[tuple[str, int], npt.NDArray[np.float32]],
    counts: dict[tuple[str, int], HandCount],
) -> dict[str, Any] | None:
    """Recall and precision at IoU 0.3 and 0.5 on the frames boxed by hand (``boxes.csv``,
    a subset of the frames counted by hand, measured as above), per camera and pooled;
    and the boxes' number against ``counts.csv`` (a third count of those frames). None
    when the set has no boxes."""
    import numpy as np

    from roadsense.models.detection.counts import hand_count_scores
    from roadsense.models.detection.scoring import score_detections
    from roadsense.models.footage.hand_boxes import BOXES_FILE, read_hand_boxes

    path = footage / BOXES_FILE
    if not path.is_file():
        return None
    boxed = read_hand_boxes(path, clips)
    missing = [f"{b.file} frame {b.frame}" for b in boxed if (b.file, b.frame) not in measured]
    if missing:
        raise RoadSenseError(f"{path}: boxed frames not counted by hand: {', '.join(missing)}")
    rows: list[dict[str, Any]] = []
    for camera in sorted({b.camera for b in boxed}):
        mine = [b for b in boxed if b.camera == camera]
        found = [measured[b.file, b.frame] for b in mine]
        every = score_detections(found, [b.xyxy for b in mine])
        sure = score_detections(found, [b.xyxy[~b.uncertain] for b in mine])
        # The boxes as a third count, scored as the detector is against the first counter.
        apart = hand_count_scores(
            camera, [(counts[b.file, b.frame].vehicles, len(b.xyxy)) for b in mine]
        )
        rows.append(
            {
                "camera": camera,
                "frames": len(mine),
                "boxes": sum(len(b.xyxy) for b in mine),
                "uncertain": sum(int(b.uncertain.sum()) for b in mine),
                "found": sum(len(f) for f in found),
                "recall_30": every.recall(0.3),
                "recall_50": every.recall(0.5),
                "precision_30": every.precision(0.3),
                "recall_30_certain": sure.recall(0.3),
                "boxes_vs_count": apart.count_error,
                "boxes_vs_count_bias": apart.bias,
            }
        )
    pooled = score_detections([measured[b.file, b.frame] for b in boxed], [b.xyxy for b in boxed])
    fields = ("recall_30", "recall_50", "precision_30", "recall_30_certain")
    return {
        "frames": len(boxed),
        "boxes": sum(r["boxes"] for r in rows),
        "uncertain": sum(r["uncertain"] for r in rows),
        "cameras": [rounded(r) for r in rows],
        "camera_mean": {k: round(float(np.nanmean([r[k] for r in rows])), 3) for k in fields},
        "pooled": {
            "recall_30": round(pooled.recall(0.3), 3),
            "recall_50": round(pooled.recall(0.5), 3),
            "precision_30": round(pooled.precision(0.3), 3),
        },
        "boxes_vs_count": {
            "difference": round(float(np.nanmean([r["boxes_vs_count"] for r in rows])), 3),
            "bias": round(float(np.nanmean([r["boxes_vs_count_bias"] for r in rows])), 3),
        },
    }


def rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) and not math.isnan(v) else v
            for k, v in values.items()}  # fmt: skip
