"""Class folders from clips labelled by hand: a CSV of frame ranges and their level.

The CSV has a header ``video,first_frame,last_frame,label`` (frames 0-based and inclusive,
videos relative to the CSV's folder). Every ``every``-th frame of each range is written to
``OUT/<label>/<clip>_f<frame>.png`` with ``OUT/dataset.json`` recording each clip's sha256,
the ranges and the counts. This is how frames of another camera, labelled by a person,
become a test set (``roadsense models evaluate``, ``train congestion --unseen``).
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from roadsense.core.errors import FootageError
from roadsense.models.card import sha256_file
from roadsense.models.congestion_labels import CONGESTION_LABELS
from roadsense.models.footage.dataset import fresh_folder, write_image
from roadsense.models.footage.video import read_frames
from roadsense.models.image_sets import MANIFEST

COLUMNS = ("video", "first_frame", "last_frame", "label")


@dataclass(frozen=True)
class LabelledRange:
    """Frames ``first``..``last`` (inclusive) of one clip carry one label."""

    video: str
    first_frame: int
    last_frame: int
    label: str


def whole_number(value: str, where: str, column: str) -> int:
    """``value`` as a non-negative whole number, else FootageError naming ``where``."""
    try:
        number = int(value)
    except ValueError:
        raise FootageError(f"{where}: {column} must be a whole number, got {value!r}") from None
    if number < 0:
        raise FootageError(f"{where}: {column} must be >= 0, got {number}")
    return number


def read_labels(path: Path, labels: Sequence[str] = CONGESTION_LABELS) -> list[LabelledRange]:
    """The ranges of a labels CSV, checked: known labels, ordered and non-overlapping ranges."""
    if not path.is_file():
        raise FootageError(f"{path}: no such labels file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or tuple(reader.fieldnames) != COLUMNS:
            raise FootageError(
                f"{path}: the header must be {','.join(COLUMNS)}, got {reader.fieldnames}"
            )
        ranges: list[LabelledRange] = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            first = whole_number(row["first_frame"], where, "first_frame")
            last = whole_number(row["last_frame"], where, "last_frame")
            if last < first:
                raise FootageError(f"{where}: last_frame {last} is before first_frame {first}")
            if row["label"] not in labels:
                raise FootageError(
                    f"{where}: unknown label {row['label']!r}; known: {', '.join(labels)}"
                )
            ranges.append(LabelledRange(row["video"], first, last, row["label"]))
    if not ranges:
        raise FootageError(f"{path}: no labelled ranges")
    by_video: dict[str, list[LabelledRange]] = {}
    for item in ranges:
        by_video.setdefault(item.video, []).append(item)
    for video, items in by_video.items():
        items.sort(key=lambda item: item.first_frame)
        for before, after in pairwise(items):
            if after.first_frame <= before.last_frame:
                raise FootageError(
                    f"{path}: {video}: frames {after.first_frame}..{before.last_frame} "
                    "carry two labels"
                )
    return ranges


@dataclass
class LabelledFrames:
    """What ``build_labelled_frames`` wrote."""

    out: Path
    counts: dict[str, int]
    manifest: dict[str, Any]


def build_labelled_frames(
    labels_csv: Path, out: Path, every: int = 1, labels: Sequence[str] = CONGESTION_LABELS
) -> LabelledFrames:
    """Write every ``every``-th labelled frame as ``OUT/<label>/<clip>_f<frame>.png``."""
    if every < 1:
        raise FootageError(f"every must be at least 1, got {every}")
    started = time.perf_counter()
    ranges = read_labels(labels_csv, labels)
    videos = {item.video: labels_csv.parent / item.video for item in ranges}
    for name, video in videos.items():
        if not video.is_file():
            raise FootageError(f"{labels_csv}: video {name} not found at {video}")
    fresh_folder(out)
    counts: Counter[str] = Counter()
    clips: list[dict[str, Any]] = []
    for name, video in videos.items():
        mine = [item for item in ranges if item.video == name]
        frames = 0
        for index, frame in enumerate(read_frames(video)):
            frames += 1
            for item in mine:
                inside = item.first_frame <= index <= item.last_frame
                if inside and (index - item.first_frame) % every == 0:
                    write_image(out / item.label, f"{video.stem}_f{index:05d}.png", frame)
                    counts[item.label] += 1
        beyond = [item for item in mine if item.last_frame >= frames]
        if beyond:
            raise FootageError(
                f"{labels_csv}: {name} has {frames} frames but a range ends at frame "
                f"{beyond[0].last_frame}"
            )
        clips.append({"file": name, "sha256": sha256_file(video), "frames": frames})
    manifest: dict[str, Any] = {
        "labels": list(labels),
        "counts": {name: counts.get(name, 0) for name in labels},
        "source": "hand-labelled frame ranges",
        "labels_file": labels_csv.name,
        "labels_sha256": sha256_file(labels_csv),
        "every": every,
        "clips": clips,
        "ranges": [asdict(item) for item in ranges],
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    readme = labels_csv.parent / "README.md"
    if readme.is_file():
        manifest["provenance"] = str(readme)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return LabelledFrames(out, manifest["counts"], manifest)
