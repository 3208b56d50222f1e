"""Temporal support: a weak box counts only where the camera's previous sample counted a
vehicle; the meter applies it, the card carries its thresholds, and the evaluation's
choice of thresholds is made on the training cameras alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from roadsense.core.errors import ModelLoadError
from roadsense.edge.backends.detector import create_detector
from roadsense.edge.measure.window import CameraMeter
from roadsense.models.detection.card import load_detector_card
from roadsense.models.detection.counts import CountScores, choose, leave_one_camera_out
from roadsense.models.detection.support import MAX_GAP_S, SupportThresholds, TemporalSupport
from roadsense.models.shipped import DEFAULT_DETECTOR
from roadsense.proto.v1 import telemetry_pb2

CAR = (100.0, 100.0, 140.0, 130.0)
SHIFTED = (104.0, 102.0, 144.0, 132.0)  # the same car a little on: IoU 0.7
ELSEWHERE = (10.0, 200.0, 50.0, 230.0)


def _boxes(*boxes: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def _scores(*scores: float) -> np.ndarray:
    return np.array(scores, dtype=np.float32)


def test_a_weak_box_counts_where_the_previous_sample_counted_a_vehicle() -> None:
    support = TemporalSupport(SupportThresholds(0.15, 0.08))
    assert support.keep(0.0, _boxes(CAR, ELSEWHERE), _scores(0.6, 0.1)).tolist() == [True, False]
    # One second on: the car scores 0.1 (supported), a new weak box elsewhere does not count,
    # and a box under the support threshold never counts.
    kept = support.keep(1.0, _boxes(SHIFTED, ELSEWHERE, CAR), _scores(0.1, 0.12, 0.05))
    assert kept.tolist() == [True, False, False]
    # Support chains through supported boxes: the car still counts at 0.09 a second later.
    assert support.keep(2.0, _boxes(CAR), _scores(0.09)).tolist() == [True]


def test_without_recent_history_only_the_score_threshold_counts() -> None:
    support = TemporalSupport(SupportThresholds(0.15, 0.08))
    assert support.keep(0.0, _boxes(CAR), _scores(0.1)).tolist() == [False]  # first sample
    support.keep(1.0, _boxes(CAR), _scores(0.9))
    # The stream stalled: the sample before the gap supports nothing.
    assert support.keep(1.0 + MAX_GAP_S + 0.5, _boxes(CAR), _scores(0.1)).tolist() == [False]
    # Support off: the score threshold alone, history or not.
    off = TemporalSupport(SupportThresholds(0.15))
    off.keep(0.0, _boxes(CAR), _scores(0.9))
    assert off.keep(1.0, _boxes(CAR), _scores(0.1)).tolist() == [False]


def test_support_threshold_must_lie_under_the_score_threshold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"support threshold 0\.2 must"):
        SupportThresholds(0.15, 0.2)
    card = json.loads(DEFAULT_DETECTOR.with_suffix(".card.json").read_text(encoding="utf-8"))
    card["support_threshold"] = 0.5
    model = tmp_path / "detector.onnx"
    model.write_bytes(DEFAULT_DETECTOR.read_bytes())
    (tmp_path / "detector.card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="support_threshold must not exceed score_threshold"):
        load_detector_card(model)


def test_the_shipped_card_counts_with_support_and_its_detector_returns_weak_boxes() -> None:
    card = load_detector_card(DEFAULT_DETECTOR)
    assert card.thresholds == SupportThresholds(card.score_threshold, card.support_threshold)
    assert card.support_threshold is not None
    assert card.thresholds.least == card.support_threshold < card.score_threshold
    detector = create_detector("onnxruntime", DEFAULT_DETECTOR)
    try:
        assert detector.score_threshold == card.support_threshold
    finally:
        detector.close()


def _detections(boxes: np.ndarray, scores: np.ndarray) -> sv.Detections:
    return sv.Detections(
        xyxy=boxes,
        confidence=scores,
        class_id=np.zeros(len(boxes), dtype=int),
        data={"class_name": np.array(["car"] * len(boxes))},
    )


def test_the_meter_counts_supported_boxes_and_tells_a_queue_stopped_by_its_weak_boxes() -> None:
    meter = CameraMeter(1.0, support=SupportThresholds(0.15, 0.08))
    plain = CameraMeter(1.0, support=SupportThresholds(0.15))
    # A queued car scoring 0.6, 0.1, 0.1 at 0, 1 and 2 s: the support keeps it in view.
    for t, score in enumerate((0.6, 0.1, 0.1)):
        sample = meter.observe(float(t), _detections(_boxes(CAR), _scores(score)), (288, 352))
        alone = plain.observe(float(t), _detections(_boxes(CAR), _scores(score)), (288, 352))
    assert (sample.vehicles, alone.vehicles) == (1, 0)
    # At 2 s it is compared with its own box at 0 s: stopped.
    assert sample.stopped.tolist() == [True]
    # A weak box that counted nowhere before is neither counted nor a report figure.
    lone = meter.observe(3.0, _detections(_boxes(ELSEWHERE), _scores(0.1)), (288, 352))
    assert lone.vehicles == 0
    assert lone.stopped.size == 0
    # Another detector's card (a rollout) changes what counts from the next sample on.
    meter.use_thresholds(SupportThresholds(0.05))
    weak = _detections(_boxes(ELSEWHERE), _scores(0.1))
    assert meter.observe(4.0, weak, (288, 352)).vehicles == 1


def test_a_weak_box_that_did_not_count_is_still_the_stopped_rules_reference() -> None:
    meter = CameraMeter(1.0, support=SupportThresholds(0.15, 0.08))
    meter.observe(0.0, _detections(_boxes(CAR), _scores(0.1)), (288, 352))  # not counted
    meter.observe(1.0, _detections(_boxes(), _scores()), (288, 352))
    # At 2 s the car scores well: it stood in the same place 2 s ago, so it is stopped.
    sample = meter.observe(2.0, _detections(_boxes(CAR), _scores(0.9)), (288, 352))
    assert (sample.vehicles, sample.stopped.tolist()) == (1, [True])
    # A box under the support threshold (an evaluation's detector returns such boxes, a
    # device's does not) is no reference either: the meter measures as on a device.
    meter = CameraMeter(1.0, support=SupportThresholds(0.15, 0.08))
    meter.observe(0.0, _detections(_boxes(CAR), _scores(0.05)), (288, 352))
    meter.observe(1.0, _detections(_boxes(), _scores()), (288, 352))
    sample = meter.observe(2.0, _detections(_boxes(CAR), _scores(0.9)), (288, 352))
    assert (sample.vehicles, sample.stopped.tolist()) == (1, [False])


def _scores_of(error: float) -> CountScores:
    return CountScores(10, 100, error, 0.5, 0.4, 0.5, 0.4, 0.8)


def test_each_held_out_camera_is_scored_at_the_setting_the_others_chose() -> None:
    errors = {
        # camera a likes support at 0.05, camera b no support at 0.2
        ("a", SupportThresholds(0.15, 0.05)): 0.05,
        ("b", SupportThresholds(0.2)): 0.06,
        ("b", SupportThresholds(0.15, 0.05)): 0.3,
        ("a", SupportThresholds(0.2)): 0.4,
    }
    asked: list[tuple[str, SupportThresholds]] = []

    def score(camera: str, setting: SupportThresholds) -> CountScores:
        asked.append((camera, setting))
        return _scores_of(errors.get((camera, setting), 0.5))

    folds = {f.camera: f for f in leave_one_camera_out(score, ["a", "b"], (0.15, 0.2), (0.05,))}
    assert (folds["a"].threshold, folds["a"].support) == (0.2, None)  # b's choice
    assert folds["a"].scores.count_error == 0.4
    assert (folds["b"].threshold, folds["b"].support) == (0.15, 0.05)  # a's choice
    assert folds["b"].scores.count_error == 0.3
    # Ties go to no support: with every error equal, the lowest threshold alone.
    assert choose(lambda c, s: _scores_of(0.2), ["a"], (0.15, 0.2), (0.05,)) == SupportThresholds(
        0.15
    )
    # A support threshold at or over the score threshold is never tried.
    assert all(s.support is None or s.support < s.threshold for _, s in asked)


class _WeakCarDetector:
    """Sees one car scoring 0.1 in every frame; its card is the shipped one, re-thresholded."""

    max_batch = 8

    def __init__(self, score: float, support: float | None) -> None:
        shipped = load_detector_card(DEFAULT_DETECTOR)
        self.card = shipped.model_copy(
            update={"score_threshold": score, "support_threshold": support}
        )
        self.version = f"fake-{score}"

    def detect(self, frames: list[np.ndarray]) -> list[sv.Detections]:
        return [_detections(_boxes(CAR), _scores(0.1)) for _ in frames]

    def close(self) -> None:
        pass


def test_a_swapped_detector_brings_its_thresholds_to_every_camera() -> None:
    from roadsense.edge.capture.camera import CapturedFrame
    from roadsense.edge.capture.video import VideoFrame
    from roadsense.edge.config import CameraConfig
    from roadsense.edge.health import InferenceTimer
    from roadsense.edge.measure.cameras import MeasuredCameras

    image = np.zeros((288, 352, 3), dtype=np.uint8)

    def frame(t_ms: int) -> CapturedFrame:
        video = VideoFrame(
            timestamp_ms=t_ms, stream_time_s=t_ms / 1000, width=352, height=288, key=True,
            convert=lambda: image,
        )  # fmt: skip
        return CapturedFrame("cam1", t_ms, t_ms, video)

    cameras = MeasuredCameras(_WeakCarDetector(0.15, 0.08), InferenceTimer())  # type: ignore[arg-type]
    cameras.configure([CameraConfig(id="cam1", source="cam.mp4", segment_id="s1")])

    def vehicles_mean(seq: int) -> float:
        report = telemetry_pb2.CongestionReport.FromString(cameras.report("cam1", "d", "s1", seq))
        return report.measurements.vehicles_mean

    for t_ms in (0, 1000):
        cameras.measure([frame(t_ms)])
    assert vehicles_mean(1) == 0  # 0.1 never reached 0.15: no support either
    cameras.swap(_WeakCarDetector(0.05, None))  # type: ignore[arg-type]
    for t_ms in (2000, 3000):
        cameras.measure([frame(t_ms)])
    assert vehicles_mean(2) == 1
