"""A second labeller against the set's labels: agreement per camera, kappa, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from roadsense.core.errors import FootageError
from roadsense.models.congestion_labels import CONGESTION_LABELS
from roadsense.models.footage.agreement import agreement, cohen_kappa, read_second_labels
from roadsense.models.footage.multicamera import (
    CAMERAS_FILE,
    CLIPS_FILE,
    LABELS_FILE,
    read_labelled_set,
)

from .helpers import roadsense_cli

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "data" / "footage"
HEADER = (
    "# labelled_by: a test\n# method: by hand, for the test\nfile,first_frame,last_frame,label\n"
)
TOOLEY = "tfl-03507-tooley-st-2019-08-10.mp4"  # light, frames 0-243
SHAFTESBURY = "tfl-07458-shaftesbury-ave-2019-05-27.mp4"  # heavy 0-89, jammed 90-269


def _set(tmp_path: Path) -> Path:
    for name in (CAMERAS_FILE, CLIPS_FILE, LABELS_FILE):
        shutil.copy(SHIPPED / name, tmp_path / name)
    return tmp_path


def test_kappa_by_hand() -> None:
    # 3 of 4 alike; chance agreement from the marginals 0.5 x 0.25 + 0.5 x 0.75 = 0.5
    assert cohen_kappa(np.asarray([0, 0, 1, 1]), np.asarray([0, 1, 1, 1]), 2, False) == 0.5
    # one pair a level apart: weight 1/2 with three levels; observed 1/6, by chance 1/2
    first, second = np.asarray([0, 1, 2]), np.asarray([0, 2, 2])
    assert cohen_kappa(first, second, 3, linear=True) == pytest.approx(0.6667, abs=1e-4)
    assert cohen_kappa(first, second, 3, linear=False) == 0.5
    assert cohen_kappa(np.asarray([1, 1]), np.asarray([1, 1]), 3, False) == 1.0


def test_agreement_is_counted_on_the_frames_both_label(tmp_path: Path) -> None:
    root = _set(tmp_path)
    second = tmp_path / "second.csv"
    second.write_text(
        HEADER
        + f"{TOOLEY},0,9,light\n{TOOLEY},10,19,heavy\n"  # 10 alike, 10 two levels up
        + f"{SHAFTESBURY},80,89,heavy\n{SHAFTESBURY},90,99,heavy\n"  # 10 alike, 10 one off
    )
    data = read_labelled_set(root)
    ranges, comments = read_second_labels(second, data, CONGESTION_LABELS)
    assert comments["labelled_by"] == "a test"
    report = agreement(data, ranges, CONGESTION_LABELS)
    assert report["frames_compared"] == 40
    assert report["per_camera"]["tfl-03507"] == {
        "frames": 20,
        "labels": ["light"],
        "second_labels": ["light", "heavy"],
        "agreement": 0.5,
        "two_or_more_apart": 0.5,
    }
    assert report["per_camera"]["tfl-07458"]["agreement"] == 0.5
    assert report["per_camera"]["tfl-07458"]["two_or_more_apart"] == 0.0
    assert report["camera_mean"] == {"agreement": 0.5, "two_or_more_apart": 0.25}
    matrix = np.asarray(report["confusion"]["matrix"])
    assert matrix.sum() == 40
    assert matrix[1, 1] == 10
    assert matrix[1, 3] == 10
    assert matrix[3, 3] == 10
    assert matrix[4, 3] == 10  # first said jammed, second heavy


def test_the_agreement_command_prints_the_table(tmp_path: Path) -> None:
    root = _set(tmp_path)
    second = tmp_path / "second.csv"
    second.write_text(HEADER + f"{TOOLEY},0,9,light\n{TOOLEY},10,19,moderate\n")
    result = roadsense_cli("dataset", "agreement", "--data", str(root), "--second", str(second))
    assert result.returncode == 0, result.stderr
    assert "| tfl-03507 | 20 | light | light/moderate | 0.500 | 0.000 |" in result.stdout
    assert "second: a test" in result.stdout
    as_json = roadsense_cli(
        "dataset", "agreement", "--data", str(root), "--second", str(second), "--json"
    )
    assert json.loads(as_json.stdout)["camera_mean"]["agreement"] == 0.5


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (HEADER + f"{TOOLEY},0,9,busy\n", r"second.csv:4: unknown level 'busy'"),
        (HEADER + f"{TOOLEY},0,900,light\n", r"second.csv:4: range ends at frame 900"),
        (HEADER + "nowhere.mp4,0,9,light\n", r"second.csv:4: clip 'nowhere.mp4' is not in"),
        ("file,first_frame,last_frame,label\n" + f"{TOOLEY},0,9,light\n", "labelled_by"),
    ],
)
def test_a_bad_second_label_file_is_refused_with_what_is_wrong(
    tmp_path: Path, body: str, error: str
) -> None:
    root = _set(tmp_path)
    second = tmp_path / "second.csv"
    second.write_text(body)
    with pytest.raises(FootageError, match=error):
        read_second_labels(second, read_labelled_set(root), CONGESTION_LABELS)
    result = roadsense_cli("dataset", "agreement", "--data", str(root), "--second", str(second))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "second.csv" in result.stderr


def test_a_missing_or_disjoint_second_file_is_refused(tmp_path: Path) -> None:
    data = read_labelled_set(_set(tmp_path))
    with pytest.raises(FootageError, match="no such label file"):
        read_second_labels(tmp_path / "absent.csv", data, CONGESTION_LABELS)
    second = tmp_path / "second.csv"
    second.write_text(HEADER + "tfl-06598-cromwell-rd-collingham-rd-2019-06-14.mp4,205,210,light\n")
    ranges, _ = read_second_labels(second, data, CONGESTION_LABELS)  # frames 200-219: none
    with pytest.raises(FootageError, match="no labelled frame in common"):
        agreement(data, ranges, CONGESTION_LABELS)
