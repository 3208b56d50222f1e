"""A camera's region of interest: the part of each frame the classifier sees.

Fractions of the frame (x, y, width, height), so one ROI fits any resolution the camera
is set to. Shared by the fleet manifest and the edge configuration; needs no numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Roi = tuple[float, float, float, float]
"""A region of a frame as fractions of its size: x, y, width, height."""


def check_roi(roi: Roi | None) -> Roi | None:
    """``roi`` when it lies inside the frame, else ValueError saying so."""
    if roi is not None:
        x, y, w, h = roi
        if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 - x and 0 < h <= 1 - y):
            raise ValueError(
                "the region must lie inside the frame: x, y, width, height as fractions of it"
            )
    return roi


def check_regions(regions: list[Roi]) -> list[Roi]:
    """``regions`` when every one lies inside the frame, else ValueError saying so."""
    for region in regions:
        check_roi(region)
    return regions


def roi_box(width: int, height: int, roi: Roi) -> tuple[int, int, int, int]:
    """Pixel bounds (left, top, right, bottom; right/bottom exclusive) of ``roi`` in a
    frame of that size, at least one pixel each way."""
    x, y, w, h = roi
    left, top = min(width - 1, round(x * width)), min(height - 1, round(y * height))
    right = max(left + 1, min(width, round((x + w) * width)))
    bottom = max(top + 1, min(height, round((y + h) * height)))
    return left, top, right, bottom


def crop_roi(frame: npt.NDArray[np.uint8], roi: Roi | None) -> npt.NDArray[np.uint8]:
    """The part of ``frame`` inside ``roi`` (a view, no copy; at least one pixel each way)."""
    if roi is None:
        return frame
    height, width = frame.shape[:2]
    left, top, right, bottom = roi_box(width, height, roi)
    return frame[top:bottom, left:right]
