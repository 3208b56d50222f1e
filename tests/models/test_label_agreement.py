"""A second labeller against the set's labels: agreement per camera, kappa, refusals; and
the leave-one-camera-out scored on the second labeller's frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

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
from roadsense.models.loco_report import second_labeller_figures
from roadsense.models.training.congestion import lite_train, loco
from roadsense.models.training.congestion.features import FeatureSet
from roadsense.models.training.congestion.head import fit_head

from ..support.helpers import roadsense_cli
from .test_lite_classifier import _synthetic

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "data" / "footage"
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


def test_held_out_predictions_are_scored_against_the_second_labeller_by_hand() -> None:
    def probabilities(levels: list[int]) -> np.ndarray:
        return np.eye(5)[levels] * 0.6 + 0.08

    scored = {
        # second: free, free, light; first: free, none, moderate; predicted: free, light, light
        "a": (np.asarray([0, 0, 1]), np.asarray([0, -1, 2]), probabilities([0, 1, 1])),
        # second: heavy; first: light; predicted: light (two levels off the second)
        "b": (np.asarray([3]), np.asarray([1]), probabilities([1])),
    }
    report = second_labeller_figures(scored)
    assert report["per_camera"]["a"] == {
        "frames": 3,
        "accuracy": round(2 / 3, 4),
        "gross_error_rate": 0.0,
        "consensus_frames": 1,  # only the first frame: both said free
        "consensus_accuracy": 1.0,
        "consensus_gross_error_rate": 0.0,
    }
    assert report["per_camera"]["b"]["gross_error_rate"] == 1.0
    assert np.isnan(report["per_camera"]["b"]["consensus_accuracy"])
    assert report["camera_mean"] == {
        "accuracy": round((2 / 3 + 0) / 2, 4),
        "gross_error_rate": 0.5,
        "consensus_accuracy": 1.0,  # b has no consensus frame: left out
        "consensus_gross_error_rate": 0.0,
        "consensus_cameras": 1,
    }


def test_the_loco_scores_second_labels_and_never_trains_on_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _synthetic(views=2)
    rows = list(range(0, len(data.labels), 3))
    features = data.features[rows, :1].copy()
    features[:, :, 0] = 99.0  # a marker no training row carries
    second_set = FeatureSet(
        features, data.labels[rows], [data.cameras[i] for i in rows], data.classes, 0.0
    )
    first = data.labels[rows].copy()
    first[::2] = -1  # the first labeller gave no level to every other frame
    second = loco.SecondLabels(second_set, first, "second.csv")
    seen: list[float] = []
    real = fit_head

    def spy(features: Any, labels: Any, classes: int, l2: float, **kwargs: Any) -> Any:
        seen.extend(float(v) for v in features[:, 0])
        return real(features, labels, classes, l2, **kwargs)

    monkeypatch.setattr(loco, "fit_head", spy)
    settings = loco.HeadSettings(l2_grid=(1e-2,), families=("multinomial",), views=2)
    report = loco.leave_one_camera_out(data, settings, second=second)
    assert 99.0 not in seen
    figures = report["second_labeller"]
    assert figures["labels_file"] == "second.csv"
    assert sum(c["frames"] for c in figures["per_camera"].values()) == len(rows)
    assert sum(c["consensus_frames"] for c in figures["per_camera"].values()) == int(
        (first >= 0).sum()
    )


@pytest.mark.integration
def test_second_labels_are_read_as_frames_with_the_first_labellers_level(
    tmp_path: Path,
) -> None:
    second = tmp_path / "second.csv"
    second.write_text(
        HEADER
        + f"{TOOLEY},5,5,free\n{SHAFTESBURY},95,95,heavy\n"
        + "tfl-06598-cromwell-rd-collingham-rd-2019-06-14.mp4,210,210,light\n"  # first: none
    )
    labels = lite_train._second_labels(
        read_labelled_set(SHIPPED), second, lite_train.LiteSettings()
    )
    assert labels.features.features.shape == (3, 1, 2024)
    assert labels.features.cameras == ["tfl-03507", "tfl-06598", "tfl-07458"]
    assert [CONGESTION_LABELS[i] for i in labels.features.labels] == ["free", "light", "heavy"]
    assert labels.first.tolist() == [1, -1, 4]  # light, none, jammed


def test_the_shipped_second_labels_read_and_give_the_readme_figures() -> None:
    data = read_labelled_set(SHIPPED)
    ranges, comments = read_second_labels(SHIPPED / "labels-second.csv", data, CONGESTION_LABELS)
    assert len(ranges) == 184
    assert "blind" in comments["labelled_by"]
    assert {r.first_frame for r in ranges} == {r.last_frame for r in ranges}  # single frames
    report = agreement(data, ranges, CONGESTION_LABELS)
    assert report["frames_compared"] == 182
    assert report["camera_mean"] == {"agreement": 0.6518, "two_or_more_apart": 0.0476}
    assert report["cohen_kappa"] == pytest.approx(0.546, abs=5e-4)
