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


Points = list[tuple[float, float]]
"""A polygon or a line: points (x, y) as fractions of the frame."""


def check_zone(zone: Points | None) -> Points | None:
    """A camera's zone: 3 or more points within the frame, else ValueError saying so."""
    if zone is not None and (len(zone) < 3 or any(not 0 <= v <= 1 for p in zone for v in p)):
        raise ValueError("a zone is 3 or more points [x, y], fractions of the frame (0..1)")
    return zone


def check_line(line: Points | None) -> Points | None:
    """A counting line: two points within the frame, else ValueError saying so."""
    if line is not None and (len(line) != 2 or any(not 0 <= v <= 1 for p in line for v in p)):
        raise ValueError("a counting line is two points [x, y], fractions of the frame")
    return line
