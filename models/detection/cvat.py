"""Ground-truth readers: CVAT 1.1 interpolation-mode XML tracks and YOLO txt labels.

Why: scoring the edge measurement (counts, boxes, stopped/moving) needs per-frame truth
with track identity and the annotators' ``stopped``/``parked`` flags.

Decisions (documented because they change the numbers):
- ``outside="1"`` boxes are dropped: in CVAT they mark that the track has *left* the
  view from that frame on (the box is a stale copy of the last position), so they are
  not objects in the frame.
- ``occluded="1"`` boxes are kept (the vehicle is there) and flagged, so a scorer can
  report them separately.
- Interpolation-mode exports list a box for every frame of a track (keyframes and
  interpolated ones), so no interpolation is done here; if a frame of a track is
  missing between two boxes it is filled linearly (defensive; CVAT 1.1 exports do not
  need it).
- Tiny/partial boxes are *not* removed here; ``FrameTruth.filtered`` applies a minimum
  side and an optional ignore region so the policy lives in one place (the scorer).
- ``stopped`` truth = annotator's ``stopped`` OR ``parked`` flag (both mean "not
  moving"); the raw flags are kept too.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameTruth:
    """All truth boxes of one frame (arrays aligned on axis 0)."""

    xyxy: NDArray[np.float32]
    track_id: NDArray[np.int64]
    stopped: NDArray[np.bool_]
    parked: NDArray[np.bool_]
    occluded: NDArray[np.bool_]
    vtype: NDArray[np.str_]

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @property
    def not_moving(self) -> NDArray[np.bool_]:
        """Truth for the stopped/moving classifier: stopped or parked."""
        return self.stopped | self.parked

    def select(self, mask: NDArray[np.bool_]) -> FrameTruth:
        """Subset by boolean mask."""
        return FrameTruth(
            self.xyxy[mask],
            self.track_id[mask],
            self.stopped[mask],
            self.parked[mask],
            self.occluded[mask],
            self.vtype[mask],
        )

    def filtered(
        self, min_side: float = 0.0, y_min: float = -np.inf, y_max: float = np.inf
    ) -> FrameTruth:
        """Drop boxes whose shorter side is under ``min_side`` px or whose centre lies outside
        [y_min, y_max)."""
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        cy = (self.xyxy[:, 1] + self.xyxy[:, 3]) / 2
        keep = (wh.min(axis=1) >= min_side) & (cy >= y_min) & (cy < y_max)
        return self.select(keep)


def empty_truth() -> FrameTruth:
    """A frame with no boxes."""
    return FrameTruth(
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.int64),
        np.zeros(0, bool),
        np.zeros(0, bool),
        np.zeros(0, bool),
        np.zeros(0, dtype="<U10"),
    )


def _build(
    rows: list[tuple[int, int, float, float, float, float, bool, bool, bool, str]],
) -> FrameTruth:
    if not rows:
        return empty_truth()
    return FrameTruth(
        xyxy=np.array([r[2:6] for r in rows], dtype=np.float32),
        track_id=np.array([r[1] for r in rows], dtype=np.int64),
        stopped=np.array([r[6] for r in rows], dtype=bool),
        parked=np.array([r[7] for r in rows], dtype=bool),
        occluded=np.array([r[8] for r in rows], dtype=bool),
        vtype=np.array([r[9] for r in rows], dtype="<U10"),
    )


def parse_cvat(path: str | Path) -> tuple[dict[int, FrameTruth], tuple[int, int]]:
    """Parse a CVAT 1.1 XML file; return ({frame: FrameTruth} for every frame, (h, w)).

    Every frame from ``start_frame`` to ``stop_frame`` has an entry (possibly empty),
    so "no vehicles" frames are scored too. An un-annotated task (no tracks) returns
    all-empty frames; callers should check ``n_tracks`` via ``count_tracks``.
    """
    root = ET.parse(str(path)).getroot()
    task = root.find("meta/task")
    if task is None:
        raise ValueError(f"{path}: no meta/task")
    start = int(task.findtext("start_frame", "0"))
    stop = int(task.findtext("stop_frame", "0"))
    h = int(task.findtext("original_size/height", "0"))
    w = int(task.findtext("original_size/width", "0"))
    rows: dict[int, list[tuple[int, int, float, float, float, float, bool, bool, bool, str]]] = {
        f: [] for f in range(start, stop + 1)
    }
    for track in root.iter("track"):
        tid = int(track.get("id", "-1"))
        for box in track.iter("box"):
            if box.get("outside") == "1":
                continue
            attrs = {a.get("name"): (a.text or "") for a in box.iter("attribute")}
            f = int(box.get("frame", "-1"))
            rows.setdefault(f, []).append(
                (
                    f,
                    tid,
                    float(box.get("xtl", 0)),
                    float(box.get("ytl", 0)),
                    float(box.get("xbr", 0)),
                    float(box.get("ybr", 0)),
                    attrs.get("stopped") == "true",
                    attrs.get("parked") == "true",
                    box.get("occluded") == "1",
                    attrs.get("type", "undefined"),
                )
            )
    out = {f: _build(r) for f, r in sorted(rows.items())}
    logger.info("%s: %d frames, %d boxes", path, len(out), sum(len(t) for t in out.values()))
    return out, (h, w)


def count_tracks(path: str | Path) -> int:
    """Number of <track> elements (0 means the clip was never annotated)."""
    return sum(1 for _ in ET.parse(str(path)).getroot().iter("track"))


def parse_yolo(label_path: str | Path, image_shape: tuple[int, int]) -> NDArray[np.float32]:
    """Read a YOLO txt label (``class cx cy w h`` normalised) into xyxy pixels (N, 4).

    The class column is ignored (vehicles-ccby has one class, ``Vehicle``).
    """
    h, w = image_shape
    p = Path(label_path)
    if not p.exists():
        return np.zeros((0, 4), np.float32)
    vals = [list(map(float, ln.split()[1:5])) for ln in p.read_text().splitlines() if ln.strip()]
    if not vals:
        return np.zeros((0, 4), np.float32)
    a = np.array(vals, dtype=np.float32)
    cx, cy, bw, bh = a[:, 0] * w, a[:, 1] * h, a[:, 2] * w, a[:, 3] * h
    return np.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), axis=1)
