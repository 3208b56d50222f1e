"""The labelled multi-camera set: the shipped files read, and every kind of mistake is
refused with file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadsense.core.errors import FootageError
from roadsense.core.roi import roi_box
from roadsense.models.footage.hand_boxes import BOXES_FILE, read_hand_boxes
from roadsense.models.footage.multicamera import (
    CAMERAS_FILE,
    CLIPS_FILE,
    COMPOSITES_FILE,
    COUNTS_FILE,
    LABELS_FILE,
    SECOND_COUNTS_FILE,
    composite_frames,
    labelled_frames,
    median_background,
    read_hand_counts,
    read_labelled_set,
)

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "data" / "footage"
TFL_06600 = "tfl-06600-cromwell-earlscourt-2019-05-24.mp4"


def test_the_shipped_set_reads_and_every_camera_has_a_region() -> None:
    data = read_labelled_set(SHIPPED)
    assert len(data.cameras) == 21
    assert len(data.clips) == 22
    assert {clip.camera for clip in data.clips.values()} == set(data.cameras)
    assert data.comments["labelled_by"]
    assert {r.label for r in data.ranges} == {"free", "light", "moderate", "heavy", "jammed"}


def test_tfl_regions_leave_out_the_burned_in_text_bands() -> None:
    data = read_labelled_set(SHIPPED)
    tfl = [camera for name, camera in data.cameras.items() if name.startswith("tfl-")]
    assert len(tfl) == 17
    for camera in tfl:
        _, top, _, bottom = roi_box(352, 288, camera.roi)
        assert top >= 0.18 * 288 - 1, camera.id  # timestamp, camera number, logo
        assert bottom <= 0.92 * 288 + 1, camera.id  # street name


def test_the_shipped_hand_counts_cover_every_camera_without_boxes() -> None:
    data = read_labelled_set(SHIPPED)
    counts = read_hand_counts(SHIPPED / COUNTS_FILE, data.clips)
    boxed = {"tfl-03601", "tfl-07355"}
    assert {c.camera for c in counts} == set(data.cameras) - boxed
    assert len(counts) == 57
    assert sum(c.vehicles for c in counts) == 600
    # Every uncertain count says why.
    assert all(c.note for c in counts if c.uncertain)


def test_the_second_counter_counted_the_same_frames() -> None:
    data = read_labelled_set(SHIPPED)
    first = read_hand_counts(SHIPPED / COUNTS_FILE, data.clips)
    second = read_hand_counts(SHIPPED / SECOND_COUNTS_FILE, data.clips)
    assert [(c.file, c.frame) for c in second] == [(c.file, c.frame) for c in first]
    assert sum(c.vehicles for c in second) == 627
    assert all(c.note for c in second if c.uncertain)


def test_the_shipped_hand_boxes_cover_the_counted_frames_and_stand_in_the_region() -> None:
    data = read_labelled_set(SHIPPED)
    counted = {(c.file, c.frame) for c in read_hand_counts(SHIPPED / COUNTS_FILE, data.clips)}
    boxed = read_hand_boxes(SHIPPED / BOXES_FILE, data.clips)
    assert {(b.file, b.frame) for b in boxed} == counted
    assert sum(len(b.xyxy) for b in boxed) == 623
    for frame in boxed:
        # Every box by the rule: its ground contact (bottom centre) inside the region.
        height, width = _frame_shape(frame.file)
        x, y, w, h = data.cameras[frame.camera].roi
        left, top, right, bottom = x * width, y * height, (x + w) * width, (y + h) * height
        contact_x = (frame.xyxy[:, 0] + frame.xyxy[:, 2]) / 2
        assert ((contact_x >= left) & (contact_x <= right)).all(), frame.camera
        assert ((frame.xyxy[:, 3] >= top) & (frame.xyxy[:, 3] <= bottom)).all(), frame.camera
        assert (frame.xyxy[:, 2] <= width + 0.5).all()
        assert (frame.xyxy[:, 3] <= height + 0.5).all()


def _frame_shape(file: str) -> tuple[int, int]:
    capture = cv2.VideoCapture(str(SHIPPED / file))
    try:
        return (
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        )
    finally:
        capture.release()


COUNTS_HEADER = "file,camera,frame,vehicles,uncertain,note\n"


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ("nowhere.mp4,tfl-06600,1,3,0,", r"counts.csv:2: clip 'nowhere.mp4' is not in clips.csv"),
        (f"{TFL_06600},tfl-06608,1,3,0,", r"counts.csv:2: .* camera 'tfl-06600', not 'tfl-06608'"),
        (f"{TFL_06600},tfl-06600,246,3,0,", r"counts.csv:2: frame 246 is past the clip's 246"),
        (f"{TFL_06600},tfl-06600,1,3,maybe,", r"counts.csv:2: uncertain must be 0 or 1"),
        (f"{TFL_06600},tfl-06600,1,-3,0,", r"counts.csv:2: vehicles"),
        (f"{TFL_06600},tfl-06600,1,3,0,\n{TFL_06600},tfl-06600,1,4,0,", r"counts.csv:3: .* twice"),
    ],
)
def test_a_bad_hand_count_is_refused_with_its_line(tmp_path: Path, row: str, error: str) -> None:
    data = read_labelled_set(SHIPPED)
    (tmp_path / COUNTS_FILE).write_text(COUNTS_HEADER + row + "\n")
    with pytest.raises(FootageError, match=error):
        read_hand_counts(tmp_path / COUNTS_FILE, data.clips)


BOXES_HEADER = "file,camera,frame,x1,y1,x2,y2,uncertain,note\n"


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ("nowhere.mp4,tfl-06600,1,1,1,9,9,0,", r"boxes.csv:2: clip 'nowhere.mp4' is not in"),
        (f"{TFL_06600},tfl-06608,1,1,1,9,9,0,", r"boxes.csv:2: .* camera 'tfl-06600', not"),
        (f"{TFL_06600},tfl-06600,246,1,1,9,9,0,", r"boxes.csv:2: frame 246 is past the clip's"),
        (
            f"{TFL_06600},tfl-06600,1,9,1,1,9,0,",
            r"boxes.csv:2: \(9.0, 1.0, 1.0, 9.0\) is not a",
        ),
        (f"{TFL_06600},tfl-06600,1,1,1,9,wide,0,", r"boxes.csv:2: y2 must be a number"),
        (f"{TFL_06600},tfl-06600,1,1,1,9,9,2,", r"boxes.csv:2: uncertain must be 0 or 1"),
        (
            f"{TFL_06600},tfl-06600,1,,,,,0,no vehicle\n{TFL_06600},tfl-06600,1,1,1,9,9,0,",
            r"boxes.csv:3: frame 1 of .* is both empty and boxed",
        ),
    ],
)
def test_a_bad_hand_box_is_refused_with_its_line(tmp_path: Path, rows: str, error: str) -> None:
    data = read_labelled_set(SHIPPED)
    (tmp_path / BOXES_FILE).write_text(BOXES_HEADER + rows + "\n")
    with pytest.raises(FootageError, match=error):
        read_hand_boxes(tmp_path / BOXES_FILE, data.clips)


def test_hand_boxes_are_read_per_frame_and_an_empty_frame_has_none(tmp_path: Path) -> None:
    data = read_labelled_set(SHIPPED)
    rows = (
        f"{TFL_06600},tfl-06600,1,10,20,30,40,0,\n"
        f"{TFL_06600},tfl-06600,1,50.5,60,70,80.5,1,far\n"
        f"{TFL_06600},tfl-06600,2,,,,,0,no vehicle\n"
    )
    (tmp_path / BOXES_FILE).write_text(BOXES_HEADER + rows)
    first, empty = read_hand_boxes(tmp_path / BOXES_FILE, data.clips)
    assert (first.camera, first.frame, first.uncertain.tolist()) == ("tfl-06600", 1, [False, True])
    assert first.xyxy.tolist() == [[10, 20, 30, 40], [50.5, 60, 70, 80.5]]
    assert (empty.frame, empty.xyxy.shape) == (2, (0, 4))


def _copy(tmp_path: Path) -> Path:
    for name in (CAMERAS_FILE, CLIPS_FILE, LABELS_FILE):
        shutil.copy(SHIPPED / name, tmp_path / name)
    return tmp_path


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _append(path: Path, line: str) -> int:
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, line]) + "\n")
    return len(lines) + 1


def test_an_unknown_level_is_refused_with_its_line(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    labels = root / LABELS_FILE
    line = _line_of(labels, "tfl-06641")
    labels.write_text(
        labels.read_text().replace("2019-06-24.mp4,0,231,heavy", "2019-06-24.mp4,0,231,busy")
    )
    with pytest.raises(FootageError, match=rf"labels.csv:{line}: unknown level 'busy'"):
        read_labelled_set(root)


def test_overlapping_ranges_are_refused_with_their_lines(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    labels = root / LABELS_FILE
    first = _line_of(labels, "tfl-07458-shaftesbury-ave-2019-05-27.mp4,0,89")
    added = _append(labels, "tfl-07458-shaftesbury-ave-2019-05-27.mp4,80,85,jammed")
    with pytest.raises(FootageError, match=rf"labels.csv:{added}: frames 80..89 .* line {first}"):
        read_labelled_set(root)


def test_a_range_past_the_end_of_its_clip_is_refused(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    labels = root / LABELS_FILE
    added = _append(labels, "tfl-06641-kensington-high-st-church-st-2019-06-24.mp4,232,240,heavy")
    with pytest.raises(
        FootageError, match=rf"labels.csv:{added}: range ends at frame 240 .* 232 frames"
    ):
        read_labelled_set(root)


def test_a_camera_without_a_region_is_refused(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    cameras = root / CAMERAS_FILE
    cameras.write_text(
        "\n".join(
            row for row in cameras.read_text().splitlines() if not row.startswith("tfl-06641")
        )
    )
    line = _line_of(root / CLIPS_FILE, "tfl-06641")
    with pytest.raises(
        FootageError, match=rf"clips.csv:{line}: camera 'tfl-06641' has no region of interest"
    ):
        read_labelled_set(root)


def test_a_region_outside_the_frame_is_refused(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    cameras = root / CAMERAS_FILE
    line = _line_of(cameras, "tfl-06641,")
    cameras.write_text(cameras.read_text().replace("tfl-06641,0.15,", "tfl-06641,0.55,"))
    with pytest.raises(FootageError, match=rf"cameras.csv:{line}:"):
        read_labelled_set(root)


def test_a_labels_file_must_say_who_made_it(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    labels = root / LABELS_FILE
    labels.write_text(
        "\n".join(row for row in labels.read_text().splitlines() if "labelled_by" not in row)
    )
    with pytest.raises(FootageError, match="labelled_by"):
        read_labelled_set(root)


@pytest.mark.integration
def test_frames_are_cropped_to_the_region_and_sampled_inside_the_ranges(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / LABELS_FILE).write_text(
        "# labelled_by: test\n# method: test\nfile,first_frame,last_frame,label\n"
        "tfl-06641-kensington-high-st-church-st-2019-06-24.mp4,10,49,heavy\n"
    )
    shutil.copy(SHIPPED / "tfl-06641-kensington-high-st-church-st-2019-06-24.mp4", root)
    frames = labelled_frames(read_labelled_set(root), per_clip=8)
    assert [f.index for f in frames] == [10, 15, 20, 25, 30, 35, 40, 45]
    left, top, right, bottom = roi_box(352, 288, (0.15, 0.18, 0.70, 0.74))
    assert all(f.image.shape == (bottom - top, right - left, 3) for f in frames)
    assert {f.camera for f in frames} == {"tfl-06641"}


def test_the_shipped_composites_are_free_medians_of_listed_clips() -> None:
    data = read_labelled_set(SHIPPED)
    assert len(data.composites) == 7
    assert {(c.method, c.label) for c in data.composites} == {("median", "free")}
    assert all(c.file in data.clips for c in data.composites)


COMPOSITES_HEADER = "# labelled_by: test\n# method: test\nfile,method,label\n"


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ("nowhere.mp4,median,free", r"composites.csv:4: clip 'nowhere.mp4' is not in clips.csv"),
        (f"{TFL_06600},mean,free", r"composites.csv:4: unknown method 'mean'; known: median"),
        (f"{TFL_06600},median,empty", r"composites.csv:4: unknown level 'empty'"),
        (f"{TFL_06600},median,free\n{TFL_06600},median,light", r"composites.csv:5: .* line 4"),
    ],
)
def test_a_bad_composite_is_refused_with_its_line(tmp_path: Path, row: str, error: str) -> None:
    root = _copy(tmp_path)
    (root / COMPOSITES_FILE).write_text(COMPOSITES_HEADER + row + "\n")
    with pytest.raises(FootageError, match=error):
        read_labelled_set(root)


def test_a_composites_file_must_say_who_checked_it(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / COMPOSITES_FILE).write_text(f"file,method,label\n{TFL_06600},median,free\n")
    with pytest.raises(FootageError, match=r"composites\.csv: say who labelled it"):
        read_labelled_set(root)


def test_the_median_of_a_clip_drops_what_moves_through(tmp_path: Path) -> None:
    clip = tmp_path / "moving.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    for step in range(20):
        frame = np.full((48, 64, 3), 90, np.uint8)
        x = 3 * step
        frame[16:32, x : x + 8] = 250  # a bright "vehicle" crossing the road
        writer.write(frame)
    writer.release()
    median = median_background(clip)
    assert median.shape == (48, 64, 3)
    assert np.abs(median.astype(int) - 90).max() < 12  # the vehicle is gone everywhere
    with pytest.raises(FootageError, match=r"missing\.avi: no such video file"):
        median_background(tmp_path / "missing.avi")


@pytest.mark.integration
def test_composites_are_cropped_to_their_cameras_region_and_marked(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    shutil.copy(SHIPPED / TFL_06600, root)
    (root / COMPOSITES_FILE).write_text(COMPOSITES_HEADER + f"{TFL_06600},median,free\n")
    frames = composite_frames(read_labelled_set(root), copies=3)
    left, top, right, bottom = roi_box(352, 288, (0.00, 0.35, 1.00, 0.57))
    assert [(f.camera, f.label, f.composite, f.index) for f in frames] == [
        ("tfl-06600", "free", True, -1)
    ] * 3
    assert all(f.image.shape == (bottom - top, right - left, 3) for f in frames)
