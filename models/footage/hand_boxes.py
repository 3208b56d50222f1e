"""Vehicles boxed by hand in single frames of the cameras without CVAT tracks
(``boxes.csv``): recall and precision on cameras no setting was chosen on.

One row per box, in pixels of the decoded frame: ``file,camera,frame,x1,y1,x2,y2,
uncertain,note``; a frame whose region holds no vehicle has one row with empty
coordinates (note ``no vehicle``). How the boxes were drawn is in the footage's README.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from roadsense.core.errors import FootageError
from roadsense.models.footage.multicamera import Clip, csv_rows, frame_of_clip, read_number

BOXES_FILE = "boxes.csv"
BOX_COLUMNS = ("file", "camera", "frame", "x1", "y1", "x2", "y2", "uncertain", "note")


@dataclass(frozen=True)
class HandBoxes:
    """Every vehicle a person boxed in one frame (its region's, by ground contact)."""

    file: str
    camera: str
    frame: int
    xyxy: npt.NDArray[np.float32]
    """N x 4, pixels of the decoded frame."""
    uncertain: npt.NDArray[np.bool_]


def read_hand_boxes(path: Path, clips: dict[str, Clip]) -> list[HandBoxes]:
    """The boxed frames of ``path``, in file order; a bad row (``frame_of_clip``), a box
    that is not a box (x2 <= x1, y2 <= y1, negative) or a frame both empty and boxed is
    refused with ``file:line``."""
    frames: dict[tuple[str, int], tuple[str, list[list[float]], list[bool]]] = {}
    empty: set[tuple[str, int]] = set()
    for line, row in csv_rows(path, BOX_COLUMNS):
        where = f"{path}:{line}"
        clip, frame = frame_of_clip(row, where, clips)
        key = (row["file"], frame)
        _, boxes, doubts = frames.setdefault(key, (clip.camera, [], []))
        corners = {c: row[c].strip() for c in ("x1", "y1", "x2", "y2")}
        if not any(corners.values()):
            empty.add(key)
        else:
            x1, y1, x2, y2 = (read_number(v, where, c) for c, v in corners.items())
            if not 0 <= x1 < x2 or not 0 <= y1 < y2:
                raise FootageError(f"{where}: ({x1}, {y1}, {x2}, {y2}) is not a box in the frame")
            boxes.append([x1, y1, x2, y2])
            doubts.append(row["uncertain"] == "1")
        if key in empty and boxes:
            raise FootageError(f"{where}: frame {frame} of {row['file']!r} is both empty and boxed")
    return [
        HandBoxes(
            file,
            camera,
            frame,
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(doubts, dtype=bool),
        )
        for (file, frame), (camera, boxes, doubts) in frames.items()
    ]
