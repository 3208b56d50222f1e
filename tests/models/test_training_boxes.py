"""The footage's hand boxes exported for fine-tuning: named by camera, greyed outside
what was boxed, the test cameras left out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from roadsense.cli.main import main
from roadsense.core.errors import FootageError
from roadsense.core.roi import roi_box
from roadsense.models.detection.yolox import PAD_VALUE
from roadsense.models.footage.hand_boxes import BOXES_FILE, read_hand_boxes
from roadsense.models.footage.multicamera import read_labelled_set
from roadsense.models.footage.training_boxes import export_footage_boxes
from roadsense.models.training.detector.data import read_yolo_folder

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "data" / "footage"


def test_the_boxes_are_exported_per_camera_and_the_test_cameras_left_out(
    tmp_path: Path,
) -> None:
    data = read_labelled_set(SHIPPED)
    kept = {"tfl-06600", "tfl-07355"}
    done = export_footage_boxes(
        SHIPPED, tmp_path, exclude=sorted(set(data.cameras) - kept), cvat_step=25
    )
    assert set(done.images) == kept
    assert done.images["tfl-06600"] == 3  # its three counted frames
    assert done.images["tfl-07355"] == 10  # frames 0, 25, ..., 225 of its CVAT clip
    images = read_yolo_folder(tmp_path)
    assert {image.video for image in images} == kept  # the trainer splits by camera

    boxed = [
        b for b in read_hand_boxes(SHIPPED / BOXES_FILE, data.clips) if b.camera == "tfl-06600"
    ]
    assert done.boxes["tfl-06600"] == sum(len(b.xyxy) for b in boxed) == 29
    for truth in boxed:
        exported = next(i for i in images if i.path.stem == f"tfl-06600_{truth.frame:06d}")
        np.testing.assert_allclose(exported.boxes, truth.xyxy, atol=0.5)
        pixels = cv2.imread(str(exported.path))
        assert pixels is not None
        height, width = pixels.shape[:2]
        left, top, right, bottom = roi_box(width, height, data.cameras["tfl-06600"].roi)
        outside = np.ones((height, width), bool)
        outside[top:bottom, left:right] = False
        assert (pixels[outside] == PAD_VALUE).all()
        assert (pixels[~outside] != PAD_VALUE).any()


def test_an_unknown_camera_to_leave_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FootageError, match="no camera tfl-99999"):
        export_footage_boxes(SHIPPED, tmp_path, exclude=["tfl-99999"])
    argv = ["dataset", "boxes", "--footage", str(SHIPPED), "--out", str(tmp_path / "out")]
    assert main([*argv, "--exclude", "tfl-06600,tfl-99999"]) == 2
    error = capsys.readouterr().err
    assert error.strip() == f"roadsense: {SHIPPED}: no camera tfl-99999 in cameras.csv"
    assert not (tmp_path / "out").exists()  # nothing written before the check
