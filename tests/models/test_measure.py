"""Measuring the road: the detector on real CCTV frames against hand-drawn boxes, the zone,
the stopped rule, the level rule, a report window's figures and ``roadsense measure``.

The clips and their CVAT boxes are TfL JamCam footage (models/data/footage/). The shipped
detector was never trained on any of these cameras.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv

from roadsense.edge.backends.detector import Detector, create_detector
from roadsense.edge.measure.tracking import LagStoppedRule, StoppedSettings
from roadsense.edge.measure.window import CameraMeter
from roadsense.models.detection.card import load_detector_card
from roadsense.models.detection.cvat import parse_cvat
from roadsense.models.detection.rule import RuleThresholds, level, level_shares
from roadsense.models.detection.scoring import score_detections
from roadsense.models.detection.yolox import VEHICLE_CLASSES, decode
from roadsense.models.detection.zone import in_zone, learn_zone, occupancy, zone_mask
from roadsense.models.shipped import DEFAULT_DETECTOR
from roadsense.proto.v1 import telemetry_pb2

from ..support.helpers import roadsense_cli

FOOTAGE = Path(__file__).resolve().parents[2] / "models" / "data" / "footage"
PENTONVILLE = FOOTAGE / "tfl-07355-pentonville-2019-06-28"
BLACKFRIARS = FOOTAGE / "tfl-03601-blackfriars-2019-07-02"


@pytest.fixture(scope="module")
def detector() -> Detector:
    return create_detector("onnxruntime", DEFAULT_DETECTOR, {"intra_op_threads": 2})


def _frames(clip: Path, indices: list[int]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(clip.with_suffix(".mp4")))
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < len(indices):
        ok, frame = capture.read()
        assert ok, f"{clip}: frame {index} missing"
        if index in indices:
            frames.append(frame)
        index += 1
    capture.release()
    return frames


def test_counts_on_a_camera_never_trained_on_are_within_a_fifth_of_the_hand_boxes(
    detector: Detector,
) -> None:
    truth, _ = parse_cvat(PENTONVILLE.with_suffix(".cvat.xml"))
    indices = list(range(0, 240, 30))
    frames = _frames(PENTONVILLE, indices)
    # Single frames, no history: only boxes at the card's score threshold count.
    threshold = detector.card.score_threshold
    found = [d.xyxy[np.asarray(d.confidence) >= threshold] for d in detector.detect(frames)]
    score = score_detections(
        [boxes.astype(np.float32) for boxes in found], [truth[i].xyxy for i in indices]
    )
    # Measured leave-one-camera-out at 512 px / score 0.15: count error 0.16, recall 0.6.
    assert score.n_true == sum(len(truth[i]) for i in indices) > 80
    assert score.count_error < 0.3
    assert score.recall(0.3) > 0.5
    assert score.precision(0.3) > 0.5


def test_no_person_or_other_class_ever_comes_out(detector: Detector) -> None:
    frames = _frames(BLACKFRIARS, [0, 100])  # pedestrians on both pavements
    names = {str(n) for d in detector.detect(frames) for n in d.data["class_name"]}
    assert names
    assert names <= set(VEHICLE_CLASSES.values())
    # A raw output whose only confident row is a person (COCO 0) decodes to nothing.
    rows = np.zeros((16 * 16 + 8 * 8 + 4 * 4, 85), dtype=np.float32)
    rows[0, 4], rows[0, 5] = 1.0, 1.0  # objectness 1, person 1
    rows[0, 2:4] = 1.0
    assert len(decode(rows, (128, 128), 1.0, (128, 128), score_threshold=0.1, nms_iou=0.5)) == 0
    rows[0, 5 + 2] = 0.9  # and the same box as a car comes out as a car
    (name,) = decode(rows, (128, 128), 1.0, (128, 128), score_threshold=0.1, nms_iou=0.5).data[
        "class_name"
    ]
    assert name == "car"


def _boxes(*boxes: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def test_a_box_that_stands_still_for_two_seconds_is_stopped_and_a_moving_one_is_not() -> None:
    rule = LagStoppedRule(StoppedSettings(window_s=2.0, rel_threshold=0.1))
    parked = (100.0, 100.0, 140.0, 130.0)
    for t in range(3):  # 1 Hz: the car at 2 s is compared with the car at 0 s
        moving = (10.0 + 30 * t, 200.0, 50.0 + 30 * t, 230.0)
        flags = rule.update(float(t), _boxes(parked, moving))
    assert flags.tolist() == [True, False]
    # Without a sample 2 s back (the first two seconds) nothing can be called stopped.
    fresh = LagStoppedRule(StoppedSettings())
    assert fresh.update(0.0, _boxes(parked)).tolist() == [False]
    assert fresh.update(1.0, _boxes(parked)).tolist() == [False]


def test_the_queue_of_a_jammed_approach_reads_stopped_and_keeps_its_ids(
    detector: Detector,
) -> None:
    """tfl-03601 on 2 July: a nose-to-tail queue in both lanes, hand-boxed as stopped."""
    truth, _ = parse_cvat(BLACKFRIARS.with_suffix(".cvat.xml"))
    indices = list(range(0, 150, 5))  # 5 Hz for 6 s
    frames = _frames(BLACKFRIARS, indices)
    meter = CameraMeter(sample_hz=5.0, support=detector.card.thresholds)
    samples = []
    for start in range(0, len(frames), detector.max_batch):
        batch = frames[start : start + detector.max_batch]
        for offset, found in enumerate(detector.detect(batch)):
            t_s = indices[start + offset] / 25
            samples.append(meter.observe(t_s, found, batch[offset].shape[:2]))
    late = samples[15:]  # with 2 s of history
    stopped_share = sum(int(s.stopped.sum()) for s in late) / sum(s.vehicles for s in late)
    truth_share = np.mean([truth[i].not_moving.mean() for i in indices[15:]])
    assert truth_share > 0.3
    assert stopped_share > 0.25
    # A stopped vehicle keeps one id: most ids of the last samples were seen 2 s earlier.
    earlier = {int(i) for s in samples[5:10] for i in s.track_ids if i >= 0}
    last = [int(i) for i in samples[-1].track_ids if i >= 0]
    assert len(last) >= 5
    assert sum(i in earlier for i in last) / len(last) > 0.5


def test_the_zone_decides_which_vehicles_count_and_what_they_cover() -> None:
    mask = zone_mask([(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)], (100, 200))
    assert mask.sum() == 200 * 50
    boxes = _boxes((0, 60, 20, 90), (0, 10, 20, 40), (50, 40, 70, 60))
    assert in_zone(boxes, mask).tolist() == [True, False, True]
    # Covered: 20x30 inside, 0 of the second, 20x10 of the third's lower half.
    assert occupancy(mask, boxes) == pytest.approx((20 * 30 + 20 * 10) / (200 * 50))
    assert zone_mask(None, (4, 6)).all()


def test_a_zone_is_learned_from_where_vehicles_were_seen() -> None:
    lane = [_boxes((x, 140.0, x + 30, 170.0)) for x in range(10, 300, 8)]
    zone = learn_zone(lane + lane, (288, 352))
    assert zone
    mask = zone_mask(zone, (288, 352))
    assert in_zone(np.concatenate(lane), mask).all()
    assert not mask[:100].any()  # nothing above the lane
    assert learn_zone([], (288, 352)) == []


@pytest.mark.parametrize(
    ("occupancy_", "stopped", "vehicles", "expected"),
    [
        (0.0, 0.0, 0, "free"),
        (0.01, 1.0, 1, "light"),  # one parked car on an empty road is no congestion
        (0.13, 0.6, 4, "moderate"),
        (0.20, 0.0, 8, "moderate"),
        (0.35, 0.4, 12, "heavy"),
        (0.50, 0.1, 20, "heavy"),  # dense but moving: stop-and-go
        (0.50, 0.85, 20, "jammed"),
    ],
)
def test_the_level_rule_as_written(
    occupancy_: float, stopped: float, vehicles: int, expected: str
) -> None:
    assert level(occupancy_, stopped, vehicles, RuleThresholds()) == expected


def test_rule_thresholds_must_rise_and_be_shares() -> None:
    with pytest.raises(ValueError, match="rise from light to jam"):
        RuleThresholds(light_occupancy=0.2, moderate_occupancy=0.1)
    with pytest.raises(ValueError, match="shares"):
        RuleThresholds(jam_stopped=1.5)
    shares = level_shares(["heavy", "heavy", "jammed"])
    assert sum(shares) == pytest.approx(1.0)
    assert shares.index(max(shares)) == 3


def _detections(*boxes: tuple[float, float, float, float], name: str = "car") -> sv.Detections:
    xyxy = _boxes(*boxes)
    return sv.Detections(
        xyxy=xyxy,
        confidence=np.full(len(xyxy), 0.9, np.float32),
        class_id=np.full(len(xyxy), 2),
        data={"class_name": np.array([name] * len(xyxy), dtype=object)},
    )


def test_a_report_window_sums_up_its_samples_and_round_trips_the_wire() -> None:
    meter = CameraMeter(sample_hz=1.0, zone=[(0, 0.5), (1, 0.5), (1, 1), (0, 1)])
    shape = (100, 100)
    parked = (10.0, 60.0, 30.0, 80.0)
    outside = (10.0, 5.0, 30.0, 20.0)  # above the zone: never counts
    for t in range(4):
        moving = (40.0 + 15 * t, 70.0, 55.0 + 15 * t, 90.0)
        meter.observe(float(t), _detections(parked, moving, outside), shape)
    measured, shares = meter.close_window()
    assert measured.samples == 4
    assert measured.vehicles_mean == 2.0
    assert measured.vehicles_max == 2
    assert measured.stopped_mean == 0.5  # the parked car, from the third sample on
    assert measured.stopped_max == 1
    assert [(c.vehicle_class, c.mean_in_view, c.max_in_view) for c in measured.classes] == [
        ("car", 2.0, 2)
    ]
    assert not measured.crossings_counted  # no line, and 1 Hz is too slow for one
    assert measured.rule == "occupancy-stopped/1"
    assert measured.level in ("light", "moderate")
    levels = ["free", "light", "moderate", "heavy", "jammed"]
    assert measured.confidence == pytest.approx(shares[levels.index(measured.level)])
    wire = telemetry_pb2.Measurements.FromString(measured.SerializeToString())
    assert wire == measured
    assert meter.samples_in_window == 0
    with pytest.raises(ValueError, match="no sample"):
        meter.close_window()


def test_measure_prints_a_line_per_sample_of_a_video(tmp_path: Path) -> None:
    done = roadsense_cli(
        "measure", str(PENTONVILLE.with_suffix(".mp4")), "--sample-hz", "1", "--json",
        "--stills", str(tmp_path / "stills"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    *samples, summary = lines
    assert [s["frame"] for s in samples] == list(range(0, 246, 25))
    assert [s["t_s"] for s in samples] == [float(t) for t in range(10)]
    first = samples[0]
    assert set(first) == {"frame", "t_s", "vehicles", "stopped", "occupancy", "level", "boxes"}
    assert first["vehicles"] == len(first["boxes"]) > 3
    x1, y1, x2, y2, name, score, track, stopped = first["boxes"][0]
    assert 0 <= x1 < x2 <= 352
    assert 0 <= y1 < y2 <= 288
    assert name in VEHICLE_CLASSES.values()
    assert 0 < score <= 1
    assert track is None or isinstance(track, int)
    assert isinstance(stopped, bool)
    assert first["level"] in ("free", "light", "moderate", "heavy", "jammed")
    assert summary["summary"]["samples"] == 10
    assert len(list((tmp_path / "stills").glob("*.png"))) == 10


def test_measure_reads_a_folder_of_images(tmp_path: Path) -> None:
    for name, frame in zip(("a.jpg", "b.png"), _frames(PENTONVILLE, [0, 50]), strict=True):
        cv2.imwrite(str(tmp_path / name), frame)
    (tmp_path / "notes.txt").write_text("not an image", encoding="utf-8")
    done = roadsense_cli("measure", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    *images, summary = [json.loads(line) for line in done.stdout.splitlines()]
    assert [i["image"] for i in images] == ["a.jpg", "b.png"]
    for image in images:
        assert set(image) == {"image", "vehicles", "boxes"}
        assert all(box[6] is None and box[7] is False for box in image["boxes"])
    assert summary["summary"]["samples"] == 2


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("notes.txt", "notes.txt"),
        ("empty", "no images"),
        ("missing.mp4", "no such file or folder"),
        ("rtsp://127.0.0.1:9/none", "cannot open rtsp://127.0.0.1:9/none"),
    ],
)
def test_measure_refuses_what_it_cannot_read_in_one_line(
    tmp_path: Path, target: str, words: str
) -> None:
    (tmp_path / "notes.txt").write_text("not a video", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    where = target if "://" in target else str(tmp_path / target)
    done = roadsense_cli("measure", where, "--json")
    assert done.returncode == 2
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("roadsense:")]
    assert error.startswith("roadsense: measure: ")
    assert words in error
    assert "Traceback" not in done.stderr


def test_evaluate_counts_scores_each_boxed_camera_held_out() -> None:
    done = roadsense_cli("models", "evaluate-counts", "--data", str(FOOTAGE), "--json")
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)["counts"]
    rows = {row["camera"]: row for row in counts["cameras"]}
    assert set(rows) == {"tfl-03601", "tfl-07355"}
    # 5 Hz over 25 fps clips of 240-250 frames: 48-50 of each (two clips of tfl-03601).
    assert (rows["tfl-03601"]["frames"], rows["tfl-07355"]["frames"]) == (96, 50)
    for row in rows.values():
        assert row["threshold"] in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
        assert row["support"] is None or row["support"] < row["threshold"]
        assert 0 <= row["count_error"] < 0.5
        assert 0.4 < row["recall_30"] <= 1
        assert row["recall_50"] <= row["recall_30"]
        # What the stopped/moving agreement rests on: found truth boxes of each state.
        assert row["moving_boxes"] > 0
        assert row["stopped_boxes"] >= 0
    # Blackfriars has queues at its lights: stopped boxes at every sample rate.
    assert rows["tfl-03601"]["stopped_boxes"] > 10
    means = counts["camera_mean"]
    assert means["count_error"] == pytest.approx(
        (rows["tfl-03601"]["count_error"] + rows["tfl-07355"]["count_error"]) / 2, abs=1e-3
    )
    # The card carries the thresholds chosen on both boxed cameras.
    card = load_detector_card(DEFAULT_DETECTOR)
    chosen = counts["chosen_on_all_cameras"]
    assert chosen == {"threshold": card.score_threshold, "support": card.support_threshold}
    # The other 19 cameras, counted by hand, by the card's thresholds.
    hand = json.loads(done.stdout)["hand_counts"]
    assert (hand["frames"], hand["threshold"], hand["support"]) == (57, 0.15, 0.08)
    cameras = hand["all_frames"]["cameras"]
    assert len(cameras) == 19
    assert sum(c["vehicles"] for c in cameras) == 600
    for row in cameras:
        assert row["count_error"] >= abs(row["bias"]) - 1e-3
    assert 0 < hand["all_frames"]["camera_mean"]["count_error"] < 0.4
    # The same frames counted blind by a second person: the detector against them, and the
    # two counters apart (the second's 627 vehicles against the first's 600).
    second = hand["second_counter"]["all_frames"]["cameras"]
    assert sum(c["vehicles"] for c in second) == 627
    assert [c["found"] for c in second] == [c["found"] for c in cameras]
    apart = hand["counters"]["all_frames"]
    assert sum(c["found"] for c in apart["cameras"]) == 627
    assert 0 < apart["camera_mean"]["count_error"] < 0.2
    # The same frames boxed by hand (by annotators blind to the counts): recall and
    # precision where no setting was chosen.
    boxes = hand["boxes"]
    assert (boxes["frames"], boxes["boxes"]) == (57, 623)
    assert {c["camera"] for c in boxes["cameras"]} == {c["camera"] for c in cameras}
    pooled = boxes["pooled"]
    assert 0.5 < pooled["recall_50"] <= pooled["recall_30"] <= 1
    assert 0.5 < pooled["precision_30"] <= 1
    # The boxes are a third count of those frames: close to the first counter's.
    assert abs(boxes["boxes_vs_count"]["bias"]) < 0.1
    # The shipped card states what this command measures (to a box or two, across CPUs).
    stated = load_detector_card(DEFAULT_DETECTOR).evaluation
    boxed = stated["boxed_cameras_leave_one_camera_out"]
    assert (boxed["frames"], boxed["vehicles"]) == (146, sum(r["vehicles"] for r in rows.values()))
    for name in ("count_error", "recall_30", "recall_50", "precision_30", "stopped_agreement"):
        assert boxed[name] == pytest.approx(means[name], abs=0.01), name
    counted = stated["hand_counted_cameras"]
    assert counted["count_error"] == pytest.approx(
        hand["all_frames"]["camera_mean"]["count_error"], abs=0.01
    )
    assert counted["count_error_second_counter"] == pytest.approx(
        hand["second_counter"]["all_frames"]["camera_mean"]["count_error"], abs=0.01
    )
    assert counted["counters_apart"] == apart["camera_mean"]["count_error"]
    boxed_by_hand = stated["hand_boxed_cameras"]
    assert boxed_by_hand["boxes"] == boxes["boxes"]
    for name in ("recall_30", "recall_50", "precision_30"):
        assert boxed_by_hand[name] == pytest.approx(boxes["camera_mean"][name], abs=0.01), name


def test_evaluate_counts_runs_the_detector_at_another_input_size() -> None:
    done = roadsense_cli(
        "models", "evaluate-counts", "--data", str(FOOTAGE), "--sample-hz", "0.5",
        "--input", "512x416",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("detector 1.1.0-yolox-nano-coco-512@512x416, 0.5 samples/s")
    assert [line.split()[0] for line in lines[1:4]] == ["tfl-03601", "tfl-07355", "camera"]
    assert " stopped and " in lines[1]
    assert lines[4].startswith("  chosen on all boxed cameras: threshold ")
    assert lines[5].startswith("counted by hand (57 frames, 19 cameras, threshold 0.15, support")
    assert lines[6].startswith("against the second counter: count error ")
    bad = roadsense_cli("models", "evaluate-counts", "--data", str(FOOTAGE), "--input", "500")
    assert bad.returncode == 2
    assert "input size '500': width and height must be multiples of 32" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_cameras_rule_defaults_are_the_rules_own() -> None:
    from roadsense.edge.measure.config import RuleConfig

    assert RuleConfig().thresholds() == RuleThresholds()


def test_hand_counts_score_the_error_and_the_bias_apart() -> None:
    from roadsense.models.detection.counts import hand_count_scores

    # (true, found): misses and false boxes cancel in the bias, not in the error.
    scores = hand_count_scores("cam", [(10, 8), (4, 6), (6, 6)])
    assert (scores.frames, scores.vehicles, scores.found) == (3, 20, 20)
    assert scores.count_error == pytest.approx(4 / 20)
    assert scores.bias == 0
    assert math.isnan(hand_count_scores("empty", [(0, 2)]).count_error)
