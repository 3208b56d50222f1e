"""The labelled multi-camera set: cameras (with their road regions), clips and hand labels.

Three CSV files in one folder (``models/data/footage/`` is the shipped set), ``#`` lines
being comments:

- ``cameras.csv``: ``camera,roi_x,roi_y,roi_width,roi_height,view``: every camera's
  region of interest (fractions of the frame), the only part the classifier sees;
- ``clips.csv``: ``file,camera,frames,sha256,licence``: every clip, the camera it comes
  from and its decoded frame count;
- ``labels.csv``: ``file,first_frame,last_frame,label``: hand-labelled frame ranges
  (0-based, inclusive); its comments must say who labelled it (``# labelled_by:``) and how
  (``# method:``);
- ``counts.csv`` (optional): ``file,camera,frame,vehicles,uncertain,note``: vehicles counted
  by hand in single frames of cameras without boxes (the count error's truth there);
- ``composites.csv`` (optional): ``file,method,label``: training-only images made from a
  clip where a level is rare; ``median`` is the temporal median of the clip (moving
  vehicles vanish, the empty road stays), kept only where a person checked that the result
  is of that level. Composites train; they are never scored.

Every problem is refused with ``file:line``: an unknown level, overlapping ranges, a range
past the end of its clip, a clip of a camera that has no region, a clip not listed.
Torch-free (numpy + OpenCV).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

from roadsense.core.errors import FootageError
from roadsense.core.roi import Roi, check_roi, crop_roi
from roadsense.models.congestion_labels import CONGESTION_LABELS
from roadsense.models.footage.labelled import whole_number
from roadsense.models.footage.video import read_frames
from roadsense.models.preprocess import Frame

logger = logging.getLogger(__name__)

CAMERAS_FILE = "cameras.csv"
CLIPS_FILE = "clips.csv"
LABELS_FILE = "labels.csv"
COMPOSITES_FILE = "composites.csv"
COUNTS_FILE = "counts.csv"
SECOND_COUNTS_FILE = "counts-second.csv"
"""The same frames counted by a second person, blind to the first: how far counters agree."""
CAMERA_COLUMNS = ("camera", "roi_x", "roi_y", "roi_width", "roi_height", "view")
CLIP_COLUMNS = ("file", "camera", "frames", "sha256", "licence")
LABEL_COLUMNS = ("file", "first_frame", "last_frame", "label")
COMPOSITE_COLUMNS = ("file", "method", "label")
COUNT_COLUMNS = ("file", "camera", "frame", "vehicles", "uncertain", "note")
COMPOSITE_METHODS = ("median",)
REQUIRED_COMMENTS = ("labelled_by", "method")
MEDIAN_STEP = 2
"""A median composite takes every second frame of its clip."""


@dataclass(frozen=True)
class Camera:
    """A fixed camera and the road region it is judged on."""

    id: str
    roi: Roi
    view: str


@dataclass(frozen=True)
class Clip:
    """One video file of a camera."""

    file: str
    camera: str
    frames: int
    sha256: str
    licence: str


@dataclass(frozen=True)
class LabelRange:
    """Frames ``first_frame``..``last_frame`` (inclusive) of a clip carry one level."""

    file: str
    first_frame: int
    last_frame: int
    label: str
    line: int


@dataclass(frozen=True)
class Composite:
    """A training-only image of one level, made from a clip by ``method``."""

    file: str
    method: str
    label: str
    line: int


@dataclass(frozen=True)
class LabelledSet:
    """A checked multi-camera set."""

    root: Path
    cameras: dict[str, Camera]
    clips: dict[str, Clip]
    ranges: list[LabelRange]
    comments: dict[str, str]
    composites: list[Composite] = field(default_factory=list)

    def camera_of(self, file: str) -> Camera:
        """The camera a clip comes from."""
        return self.cameras[self.clips[file].camera]


@dataclass(frozen=True)
class LabelledFrame:
    """One labelled frame, cropped to its camera's region."""

    camera: str
    file: str
    index: int
    label: str
    image: Frame
    composite: bool = False
    """Made from the clip (``composites.csv``), not one of its frames: trains, never scored."""


def csv_rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV whose ``#`` lines are comments; header checked."""
    if not path.is_file():
        raise FootageError(f"{path}: no such file")
    lines = path.read_text(encoding="utf-8").splitlines()
    content = [(n, text) for n, text in enumerate(lines, 1) if not text.startswith("#")]
    content = [(n, text) for n, text in content if text.strip()]
    if not content:
        raise FootageError(f"{path}: empty")
    header_line, header = content[0]
    found = next(csv.reader([header]))
    if tuple(found) != tuple(columns):
        raise FootageError(f"{path}:{header_line}: header must be {','.join(columns)}")
    for number, text in content[1:]:
        values = next(csv.reader([text]))
        if len(values) != len(columns):
            raise FootageError(f"{path}:{number}: {len(values)} fields, expected {len(columns)}")
        yield number, dict(zip(columns, values, strict=True))


def read_number(value: str, where: str, column: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise FootageError(f"{where}: {column} must be a number, got {value!r}") from None


def read_cameras(path: Path) -> dict[str, Camera]:
    """Cameras and their regions; a camera listed twice or a region outside the frame is
    refused."""
    cameras: dict[str, Camera] = {}
    for line, row in csv_rows(path, CAMERA_COLUMNS):
        where = f"{path}:{line}"
        if row["camera"] in cameras:
            raise FootageError(f"{where}: camera {row['camera']!r} listed twice")
        values = [read_number(row[c], where, c) for c in CAMERA_COLUMNS[1:5]]
        roi: Roi = (values[0], values[1], values[2], values[3])
        try:
            check_roi(roi)
        except ValueError as err:
            raise FootageError(f"{where}: {err}") from None
        cameras[row["camera"]] = Camera(row["camera"], roi, row["view"])
    return cameras


def read_clips(path: Path, cameras: dict[str, Camera]) -> dict[str, Clip]:
    """Clips; each must name a camera that has a region."""
    clips: dict[str, Clip] = {}
    for line, row in csv_rows(path, CLIP_COLUMNS):
        where = f"{path}:{line}"
        if row["camera"] not in cameras:
            raise FootageError(
                f"{where}: camera {row['camera']!r} has no region of interest in "
                f"{path.parent / CAMERAS_FILE}"
            )
        if row["file"] in clips:
            raise FootageError(f"{where}: clip {row['file']!r} listed twice")
        frames = whole_number(row["frames"], where, "frames")
        clips[row["file"]] = Clip(row["file"], row["camera"], frames, row["sha256"], row["licence"])
    return clips


def label_comments(path: Path) -> dict[str, str]:
    """The ``# labelled_by:`` and ``# method:`` comments a label file must carry."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and ":" in line:
            key, _, value = line.lstrip("# ").partition(":")
            if key.strip() in REQUIRED_COMMENTS:
                found[key.strip()] = value.strip()
    missing = [key for key in REQUIRED_COMMENTS if key not in found]
    if missing:
        raise FootageError(
            f"{path}: say who labelled it and how: add comment lines "
            + ", ".join(f"'# {key}: ...'" for key in missing)
        )
    return found


def read_ranges(
    path: Path, clips: dict[str, Clip], labels: Sequence[str] = CONGESTION_LABELS
) -> list[LabelRange]:
    """Labelled ranges: known levels, inside their clip, never two labels on one frame."""
    ranges: list[LabelRange] = []
    for line, row in csv_rows(path, LABEL_COLUMNS):
        where = f"{path}:{line}"
        clip = clips.get(row["file"])
        if clip is None:
            raise FootageError(f"{where}: clip {row['file']!r} is not in {CLIPS_FILE}")
        first = whole_number(row["first_frame"], where, "first_frame")
        last = whole_number(row["last_frame"], where, "last_frame")
        if last < first:
            raise FootageError(f"{where}: last_frame {last} is before first_frame {first}")
        if last >= clip.frames:
            raise FootageError(
                f"{where}: range ends at frame {last} but {clip.file} has {clip.frames} "
                f"frames (0..{clip.frames - 1})"
            )
        if row["label"] not in labels:
            raise FootageError(
                f"{where}: unknown level {row['label']!r}; known: {', '.join(labels)}"
            )
        ranges.append(LabelRange(row["file"], first, last, row["label"], line))
    if not ranges:
        raise FootageError(f"{path}: no labelled ranges")
    for file in {item.file for item in ranges}:
        mine = sorted((r for r in ranges if r.file == file), key=lambda r: r.first_frame)
        for before, after in pairwise(mine):
            if after.first_frame <= before.last_frame:
                raise FootageError(
                    f"{path}:{after.line}: frames {after.first_frame}..{before.last_frame} of "
                    f"{file} are also labelled on line {before.line}"
                )
    return ranges


def read_composites(
    path: Path, clips: dict[str, Clip], labels: Sequence[str] = CONGESTION_LABELS
) -> list[Composite]:
    """Composites (none when the file is absent): a listed clip, a known method and level,
    one composite per clip and method, and comments saying who checked them and how."""
    if not path.exists():
        return []
    label_comments(path)
    composites: list[Composite] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in csv_rows(path, COMPOSITE_COLUMNS):
        where = f"{path}:{line}"
        if row["file"] not in clips:
            raise FootageError(f"{where}: clip {row['file']!r} is not in {CLIPS_FILE}")
        if row["method"] not in COMPOSITE_METHODS:
            raise FootageError(
                f"{where}: unknown method {row['method']!r}; known: {', '.join(COMPOSITE_METHODS)}"
            )
        if row["label"] not in labels:
            raise FootageError(
                f"{where}: unknown level {row['label']!r}; known: {', '.join(labels)}"
            )
        key = (row["file"], row["method"])
        if key in seen:
            raise FootageError(
                f"{where}: {row['method']} of {row['file']} is also on line {seen[key]}"
            )
        seen[key] = line
        composites.append(Composite(row["file"], row["method"], row["label"], line))
    return composites


def read_labelled_set(root: Path, labels: Sequence[str] = CONGESTION_LABELS) -> LabelledSet:
    """Read and check the files of a labelled multi-camera set."""
    cameras = read_cameras(root / CAMERAS_FILE)
    clips = read_clips(root / CLIPS_FILE, cameras)
    ranges = read_ranges(root / LABELS_FILE, clips, labels)
    comments = label_comments(root / LABELS_FILE)
    composites = read_composites(root / COMPOSITES_FILE, clips, labels)
    return LabelledSet(root, cameras, clips, ranges, comments, composites)


def median_background(path: Path, step: int = MEDIAN_STEP) -> Frame:
    """The per-pixel median of every ``step``-th frame of a clip: what stays still (the road,
    parked or queued vehicles) stays, what moves through vanishes."""
    frames = [
        np.asarray(f, dtype=np.uint8) for i, f in enumerate(read_frames(path)) if i % step == 0
    ]
    if not frames:
        raise FootageError(f"{path}: no frames to take a median of")
    return np.asarray(np.median(np.stack(frames), axis=0), dtype=np.uint8)


def composite_frames(
    data: LabelledSet, copies: int, size: tuple[int, int] | None = None
) -> list[LabelledFrame]:
    """Each composite of ``data``, cropped to its camera's region, ``copies`` times (so it
    gets as many augmented views as a few frames do; ``index`` is -1)."""
    out: list[LabelledFrame] = []
    for item in data.composites:
        clip = data.clips[item.file]
        crop = crop_roi(median_background(data.root / item.file), data.cameras[clip.camera].roi)
        if size is not None:
            crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        out.extend(
            LabelledFrame(clip.camera, item.file, -1, item.label, crop.copy(), composite=True)
            for _ in range(copies)
        )
    return out


def sample_step(frames_labelled: int, per_clip: int) -> int:
    """Every how many frames to take about ``per_clip`` frames of a clip's labelled ranges."""
    return max(1, frames_labelled // max(1, per_clip))


def labelled_frames(
    data: LabelledSet, per_clip: int = 48, size: tuple[int, int] | None = None
) -> list[LabelledFrame]:
    """About ``per_clip`` evenly spaced labelled frames of every clip, each cropped to its
    camera's region (and resized to ``size`` = (width, height) when given)."""
    out: list[LabelledFrame] = []
    for file, clip in data.clips.items():
        mine = [r for r in data.ranges if r.file == file]
        if not mine:
            continue
        step = sample_step(sum(r.last_frame - r.first_frame + 1 for r in mine), per_clip)
        roi = data.cameras[clip.camera].roi
        decoded = 0
        for index, frame in enumerate(read_frames(data.root / file)):
            decoded += 1
            for item in mine:
                if item.first_frame <= index <= item.last_frame and (
                    (index - item.first_frame) % step == 0
                ):
                    crop = crop_roi(np.asarray(frame, dtype=np.uint8), roi)
                    image = (
                        np.asarray(
                            cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8
                        )
                        if size is not None
                        else crop.copy()
                    )
                    out.append(LabelledFrame(clip.camera, file, index, item.label, image))
        if decoded != clip.frames:
            raise FootageError(
                f"{data.root / CLIPS_FILE}: {file} decodes to {decoded} frames, listed as "
                f"{clip.frames}"
            )
    logger.info("%d labelled frames from %d clips", len(out), len(data.clips))
    return out


@dataclass(frozen=True)
class HandCount:
    """The vehicles a person counted in one frame of a clip (``counts.csv``)."""

    file: str
    camera: str
    frame: int
    vehicles: int
    uncertain: bool
    """The counter thought the count could be off by more than two."""
    note: str


def frame_of_clip(row: dict[str, str], where: str, clips: dict[str, Clip]) -> tuple[Clip, int]:
    """The clip and frame a hand-made row names; FootageError naming ``where`` for a clip
    not listed, a camera that is not the clip's, a frame past its end or an ``uncertain``
    that is not 0 or 1."""
    clip = clips.get(row["file"])
    if clip is None:
        raise FootageError(f"{where}: clip {row['file']!r} is not in {CLIPS_FILE}")
    if row["camera"] != clip.camera:
        raise FootageError(
            f"{where}: clip {row['file']!r} is of camera {clip.camera!r}, not {row['camera']!r}"
        )
    frame = whole_number(row["frame"], where, "frame")
    if frame >= clip.frames:
        raise FootageError(f"{where}: frame {frame} is past the clip's {clip.frames} frames")
    if row["uncertain"] not in ("0", "1"):
        raise FootageError(f"{where}: uncertain must be 0 or 1, got {row['uncertain']!r}")
    return clip, frame


def read_hand_counts(path: Path, clips: dict[str, Clip]) -> list[HandCount]:
    """Hand counts; a bad row (``frame_of_clip``) or a frame counted twice is refused with
    ``file:line``."""
    counts: list[HandCount] = []
    seen: set[tuple[str, int]] = set()
    for line, row in csv_rows(path, COUNT_COLUMNS):
        where = f"{path}:{line}"
        clip, frame = frame_of_clip(row, where, clips)
        if (row["file"], frame) in seen:
            raise FootageError(f"{where}: frame {frame} of {row['file']!r} counted twice")
        seen.add((row["file"], frame))
        vehicles = whole_number(row["vehicles"], where, "vehicles")
        uncertain = row["uncertain"] == "1"
        counts.append(HandCount(row["file"], clip.camera, frame, vehicles, uncertain, row["note"]))
    return counts
