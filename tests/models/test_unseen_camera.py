"""Hand-labelled clips of another camera become a test set; a deployed model is scored on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import pytest

from roadsense.core.errors import FootageError
from roadsense.edge.backends.classifier import create_classifier
from roadsense.models.card import card_path_for, load_card
from roadsense.models.congestion_eval import RecordError, evaluate_model, record_evaluation
from roadsense.models.footage.labelled import build_labelled_frames, read_labels
from roadsense.models.image_sets import DatasetError, evaluation_classes
from roadsense.models.preprocess import Frame
from roadsense.models.shipped import DEFAULT_CNN

from ..conftest import REPO
from ..support.helpers import roadsense_cli

UNSEEN = REPO / "tests" / "data" / "otvision-intersection"
LABELS = UNSEEN / "labels.csv"
CLIPS = {
    "Testvideo_Cars-Truck_FR20_2020-01-01_00-00-00.mp4": (
        "cb2ddf6f751091ea4fe76ae88fb79fdbaabcee8b9886d4aabf9ba0389f0b28a0"
    ),
    "Testvideo_Cars-Cyclist_FR20_2020-01-01_00-00-00.mp4": (
        "59fd3c64c545c82d6a033e7015e170e7d23e6df0eb76a92a9b355931c3b3bb6f"
    ),
}


@pytest.fixture(scope="module")
def unseen_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("unseen") / "frames"
    build_labelled_frames(LABELS, out)
    return out


def test_the_shipped_labels_give_120_light_frames_of_the_two_clips(unseen_set: Path) -> None:
    manifest = json.loads((unseen_set / "dataset.json").read_text())
    assert manifest["counts"] == {"free": 0, "light": 120, "moderate": 0, "heavy": 0, "jammed": 0}
    assert {clip["file"]: clip["sha256"] for clip in manifest["clips"]} == CLIPS
    assert all(clip["frames"] == 60 for clip in manifest["clips"])
    written = sorted(p.name for p in (unseen_set / "light").iterdir())
    assert len(written) == 120
    assert written[0] == "Testvideo_Cars-Cyclist_FR20_2020-01-01_00-00-00_f00000.png"
    # The PNG is the decoded frame itself (lossless), not a resized copy.
    capture = cv2.VideoCapture(str(UNSEEN / "Testvideo_Cars-Truck_FR20_2020-01-01_00-00-00.mp4"))
    for _ in range(31):
        ok, frame = capture.read()
        assert ok
    capture.release()
    image = cv2.imread(
        str(unseen_set / "light" / "Testvideo_Cars-Truck_FR20_2020-01-01_00-00-00_f00030.png")
    )
    assert image is not None
    np.testing.assert_array_equal(image, frame)


def test_every_nth_frame_of_each_range(tmp_path: Path) -> None:
    built = build_labelled_frames(LABELS, tmp_path / "out", every=20)
    assert built.counts["light"] == 6  # frames 0, 20, 40 of each clip
    names = sorted(p.name for p in (tmp_path / "out" / "light").iterdir())
    assert [name[-10:] for name in names[:3]] == ["f00000.png", "f00020.png", "f00040.png"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("video,first,last,label\n", "the header must be"),
        ("video,first_frame,last_frame,label\n", "no labelled ranges"),
        ("video,first_frame,last_frame,label\nclip.mp4,0,9,gridlock\n", "unknown label 'gridlock'"),
        ("video,first_frame,last_frame,label\nclip.mp4,9,0,free\n", "before first_frame"),
        ("video,first_frame,last_frame,label\nclip.mp4,-1,4,free\n", "first_frame must be >= 0"),
        ("video,first_frame,last_frame,label\nclip.mp4,zero,4,free\n", "whole number"),
        (
            "video,first_frame,last_frame,label\nclip.mp4,0,9,free\nclip.mp4,5,12,heavy\n",
            "frames 5..9 carry two labels",
        ),
    ],
)
def test_bad_label_files_are_named(tmp_path: Path, rows: str, message: str) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(rows)
    with pytest.raises(FootageError, match=message):
        read_labels(labels)


def test_missing_clips_and_ranges_past_the_end_are_refused(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("video,first_frame,last_frame,label\nnowhere.mp4,0,9,free\n")
    with pytest.raises(FootageError, match=r"video nowhere\.mp4 not found"):
        build_labelled_frames(labels, tmp_path / "a")
    clip = "Testvideo_Cars-Truck_FR20_2020-01-01_00-00-00.mp4"
    (tmp_path / clip).symlink_to(UNSEEN / clip)
    labels.write_text(f"video,first_frame,last_frame,label\n{clip},50,60,light\n")
    with pytest.raises(FootageError, match="has 60 frames but a range ends at frame 60"):
        build_labelled_frames(labels, tmp_path / "b")


def test_evaluate_equals_the_classifier_run_by_hand(unseen_set: Path) -> None:
    classifier = create_classifier("onnxruntime", DEFAULT_CNN)
    report = evaluate_model(classifier, DEFAULT_CNN, unseen_set)
    files = sorted((unseen_set / "light").iterdir())
    images = [cast(Frame, cv2.imread(str(path))) for path in files]
    predicted = np.concatenate(
        [classifier.classify(images[i : i + 8]).argmax(axis=1) for i in range(0, len(images), 8)]
    )
    light = classifier.labels.index("light")
    assert report["images"] == 120
    assert report["accuracy"] == round(float((predicted == light).mean()), 4)
    row = report["confusion"]["matrix"][light]
    assert row == np.bincount(predicted, minlength=len(classifier.labels)).tolist()
    assert sum(map(sum, report["confusion"]["matrix"])) == 120


def test_test_sets_must_use_the_models_classes(tmp_path: Path) -> None:
    (tmp_path / "gridlock").mkdir()
    with pytest.raises(DatasetError, match=r"\['gridlock'\] are not among the model's classes"):
        evaluation_classes(tmp_path, ["free", "light"])
    with pytest.raises(DatasetError, match="no class folders"):
        evaluation_classes(tmp_path / "gridlock", ["free", "light"])


def test_cli_builds_and_evaluates_and_names_mistakes(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    built = roadsense_cli(
        "dataset", "frames", "--labels", str(LABELS), "--out", str(out), "--every", "10"
    )
    assert built.returncode == 0, built.stderr[-2000:]
    assert "light: 12" in built.stdout
    result = roadsense_cli(
        "models", "evaluate", "--model", str(DEFAULT_CNN), "--images", str(out), "--json"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["images"] == 12
    assert report["backend"] == "onnxruntime"
    again = roadsense_cli("dataset", "frames", "--labels", str(LABELS), "--out", str(out))
    assert again.returncode == 1
    assert "exists and is not empty" in again.stderr
    (tmp_path / "bad" / "gridlock").mkdir(parents=True)
    bad = roadsense_cli(
        "models", "evaluate", "--model", str(DEFAULT_CNN), "--images", str(tmp_path / "bad")
    )
    assert bad.returncode == 1
    assert "not among the model's classes" in bad.stderr
    assert "Traceback" not in bad.stderr + again.stderr


def test_record_writes_the_figures_into_the_card_and_nothing_else(
    tmp_path: Path, unseen_set: Path
) -> None:
    model = tmp_path / "congestion.onnx"
    shutil.copy(DEFAULT_CNN, model)
    shutil.copy(card_path_for(DEFAULT_CNN), card_path_for(model))
    onnx_bytes = model.read_bytes()
    before = json.loads(card_path_for(model).read_text())
    classifier = create_classifier("onnxruntime", model)
    try:
        report = evaluate_model(classifier, model, unseen_set)
    finally:
        classifier.close()
    record_evaluation(model, "unseen_camera", report)
    after = json.loads(card_path_for(model).read_text())
    recorded = after["evaluation"].pop("unseen_camera")
    before["evaluation"].pop("unseen_camera", None)  # the shipped card has one already
    assert after == before  # every other field as it was
    assert model.read_bytes() == onnx_bytes
    assert load_card(model).evaluation["unseen_camera"]["accuracy"] == report["accuracy"]
    assert recorded["confusion"] == report["confusion"]
    assert recorded["dataset"]["clips"][0]["sha256"] in CLIPS.values()
    assert recorded["recorded_by"] == "roadsense models evaluate"
    record_evaluation(model, "unseen_camera", report)  # a record may be renewed
    with pytest.raises(RecordError, match="written by the training"):
        record_evaluation(model, "validation", report)
    with pytest.raises(RecordError, match="lower-case letters"):
        record_evaluation(model, "Unseen Camera", report)
    result = roadsense_cli(
        "models", "evaluate", "--model", str(model), "--images", str(unseen_set),
        "--record", "leave_one_camera_out",
    )  # fmt: skip
    assert result.returncode == 1
    assert "written by the training" in result.stderr
    assert "Traceback" not in result.stderr
