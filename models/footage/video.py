"""Reading footage frame by frame, and the road region as a mask."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from roadsense.core.errors import FootageError
from roadsense.models.footage.config import RoiConfig

Frame = np.ndarray


def read_frames(video: Path) -> Iterator[Frame]:
    """Every decodable BGR frame of a video file; FootageError when none can be read."""
    if not video.is_file():
        raise FootageError(f"{video}: no such video file")
    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise FootageError(f"{video}: OpenCV cannot open this video")
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield frame
        if count == 0:
            raise FootageError(f"{video}: no frame could be decoded")
    finally:
        capture.release()


def read_frames_at(video: Path, indices: set[int]) -> dict[int, Frame]:
    """The frames of a video at these 0-based indices (decoded in order, up to the last
    one asked for); FootageError naming the indices that could not be decoded."""
    found: dict[int, Frame] = {}
    if not indices:
        return found
    last = max(indices)
    for index, frame in enumerate(read_frames(video)):
        if index in indices:
            found[index] = frame
        if index >= last:
            break
    missing = sorted(indices - set(found))
    if missing:
        raise FootageError(f"{video}: frame(s) {missing} could not be decoded")
    return found


def check_frame_size(frame: Frame, roi: RoiConfig, video: Path) -> None:
    """The ROI was drawn on frames of one size; another size means the wrong config."""
    height, width = frame.shape[:2]
    if (width, height) != (roi.frame_width, roi.frame_height):
        raise FootageError(
            f"{video}: frames are {width}x{height} but the ROI is drawn on "
            f"{roi.frame_width}x{roi.frame_height}; use this clip's config"
        )


def roi_mask(roi: RoiConfig, scale: float = 1.0) -> np.ndarray:
    """Boolean mask of the ROI polygon, at ``scale`` times the frame size."""
    width = round(roi.frame_width * scale)
    height = round(roi.frame_height * scale)
    mask = np.zeros((height, width), np.uint8)
    polygon = np.round(np.array(roi.polygon, np.float64) * scale).astype(np.int32)
    cv2.fillPoly(mask, [polygon], 255)
    if not mask.any():
        raise FootageError("the ROI polygon covers no pixel")
    return mask > 0
