"""The footage's hand-drawn boxes as a YOLO folder, for ``roadsense train detector``.

Two sources, both drawn by people (the footage README says who and how):

- ``boxes.csv``: every vehicle boxed in the counted frames of the cameras without CVAT
  tracks, by ground contact in the camera's region;
- ``*.cvat.xml``: every vehicle boxed in every frame of the CVAT clips; every
  ``cvat_step``-th frame is taken (neighbouring frames are near-duplicates).

Outside the area that was boxed (a camera's region; for a CVAT clip the zone its boxes
cover) the frame is greyed to the detector's pad value, so the vehicles nobody boxed
there are not taught as background (a vehicle across the region's edge whose ground
contact lies outside stays partly visible and unboxed: the rule's price). Images are
named ``<camera>_<number>.png``, so the trainer's split by source video is a split by
camera. ``exclude`` leaves cameras out entirely: the cameras a model will be tested on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from roadsense.core.errors import FootageError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Frame = npt.NDArray[np.uint8]
    Boxes = npt.NDArray[np.float32]

logger = logging.getLogger(__name__)

CVAT_STEP = 5
"""Every fifth frame of a CVAT clip (25 fps clips: five a second). The module imports
numpy and OpenCV where they are used, so that the CLI reads this without them."""


@dataclass(frozen=True)
class Exported:
    """What one export wrote, per camera."""

    images: dict[str, int]
    boxes: dict[str, int]


def _write(out: Path, name: str, frame: Frame, keep: npt.NDArray[np.bool_], boxes: Boxes) -> int:
    """Write one image and its labels; the number of boxes written (inside the frame)."""
    import cv2

    from roadsense.models.detection.yolox import PAD_VALUE

    greyed = frame.copy()
    greyed[~keep] = PAD_VALUE
    height, width = frame.shape[:2]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    boxes = boxes[((boxes[:, 2:] - boxes[:, :2]) >= 1).all(1)]
    if not cv2.imwrite(str(out / "images" / f"{name}.png"), greyed):
        raise FootageError(f"{out}: cannot write {name}.png")
    lines = [
        f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
        f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
        for x1, y1, x2, y2 in boxes.tolist()
    ]
    (out / "labels" / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines))
    return len(lines)


def export_footage_boxes(
    footage: Path, out: Path, *, exclude: Iterable[str] = (), cvat_step: int = CVAT_STEP
) -> Exported:
    """Write ``out/images`` and ``out/labels`` from the footage's hand boxes (both
    sources), leaving out the cameras in ``exclude``; FootageError on an unknown camera."""
    import numpy as np

    from roadsense.core.roi import roi_box
    from roadsense.models.detection.cvat import parse_cvat
    from roadsense.models.detection.zone import learn_zone, zone_mask
    from roadsense.models.footage.hand_boxes import BOXES_FILE, read_hand_boxes
    from roadsense.models.footage.multicamera import read_labelled_set
    from roadsense.models.footage.video import read_frames_at

    data = read_labelled_set(footage)
    left_out = set(exclude)
    unknown = sorted(left_out - set(data.cameras))
    if unknown:
        raise FootageError(f"{footage}: no camera {', '.join(unknown)} in cameras.csv")
    for folder in ("images", "labels"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    images: dict[str, int] = {}
    written: dict[str, int] = {}

    def note(camera: str, boxes: int) -> None:
        images[camera] = images.get(camera, 0) + 1
        written[camera] = written.get(camera, 0) + boxes

    boxes_path = footage / BOXES_FILE
    boxed = read_hand_boxes(boxes_path, data.clips) if boxes_path.is_file() else []
    for file in sorted({b.file for b in boxed}):
        mine = [b for b in boxed if b.file == file and b.camera not in left_out]
        if not mine:
            continue
        frames = read_frames_at(footage / file, {b.frame for b in mine})
        roi = data.cameras[mine[0].camera].roi
        for b in mine:
            frame = frames[b.frame]
            height, width = frame.shape[:2]
            left, top, right, bottom = roi_box(width, height, roi)
            keep = np.zeros((height, width), bool)
            keep[top:bottom, left:right] = True
            note(b.camera, _write(out, f"{b.camera}_{b.frame:06d}", frame, keep, b.xyxy))
    for clip_index, xml in enumerate(sorted(footage.glob("*.cvat.xml")), start=1):
        file = xml.name.removesuffix(".cvat.xml") + ".mp4"
        camera = data.clips[file].camera if file in data.clips else None
        if camera is None:
            raise FootageError(f"{xml}: its clip {file} is not in clips.csv")
        if camera in left_out:
            continue
        truth, shape = parse_cvat(xml)
        keep = zone_mask(learn_zone([t.xyxy for t in truth.values()], shape), shape)
        wanted = {f for f in truth if f % cvat_step == 0}
        for index, frame in sorted(read_frames_at(footage / file, wanted).items()):
            name = f"{camera}_{clip_index}{index:06d}"
            note(camera, _write(out, name, frame, keep, truth[index].xyxy))
    logger.info("exported %d images of %d cameras to %s", sum(images.values()), len(images), out)
    return Exported(images, written)
