"""A camera's road zone: which vehicles count, how much of the road they cover, and
which cross a counting line.

A vehicle counts when its ground contact (the bottom centre of its box) lies in the zone,
so pavements, bays off the road and the burned-in text bands of CCTV do not. Occupancy is
the share of the zone's pixels covered by at least one vehicle box. Boxes are upright
rectangles and overhang the road behind a vehicle, so occupancy is an index comparable
over time on one camera, not a physical lane occupancy. A raster is used: 0.25 ms at 50
boxes on 352x288, against 3.8 ms for an exact polygon union (shapely), agreeing to 0.003.

``learn_zone`` proposes a zone from where vehicles were seen, so an operator need not draw
every camera: ground contacts are accumulated, cells seen twice kept, dilated by half the
typical box width (contacts only cover lane centres), and the convex hull taken of the
large blobs. It over-covers curved roads and islands, learns only the lanes it saw used,
and learns a parking lane as road (parked cars do take capacity). On the TfL clips a zone
learned from detections overlapped the zone of the hand-boxed truth at IoU 0.85-0.92.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt
import supervision as sv

logger = logging.getLogger(__name__)

Boxes = npt.NDArray[np.float32]
Polygon = Sequence[tuple[float, float]]
"""Points (x, y) as fractions of the frame's width and height, like a camera's region of
interest: one zone fits any resolution the camera is set to."""
Mask = npt.NDArray[np.bool_]


def to_pixels(points: Polygon, frame_shape: tuple[int, int]) -> npt.NDArray[np.float64]:
    """Fractions of the frame → pixels (N x 2)."""
    height, width = frame_shape
    return np.asarray(points, dtype=np.float64).reshape(-1, 2) * (width, height)


def zone_mask(polygon: Polygon | None, frame_shape: tuple[int, int]) -> Mask:
    """The zone as a mask of the frame (the whole frame without a polygon)."""
    if not polygon:
        return np.ones(frame_shape, dtype=bool)
    mask = np.zeros(frame_shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(to_pixels(polygon, frame_shape)).astype(np.int32)], 1)
    return mask.astype(bool)


def in_zone(boxes: Boxes, mask: Mask) -> npt.NDArray[np.bool_]:
    """Whether each box's ground contact (bottom centre) lies in the zone."""
    if not len(boxes):
        return np.zeros(0, dtype=bool)
    height, width = mask.shape
    x = np.clip(((boxes[:, 0] + boxes[:, 2]) / 2).astype(int), 0, width - 1)
    y = np.clip((boxes[:, 3] - 1).astype(int), 0, height - 1)
    return np.asarray(mask[y, x], dtype=bool)


def occupancy(mask: Mask, boxes: Boxes) -> float:
    """Share of the zone's pixels covered by at least one box."""
    area = int(mask.sum())
    if area == 0 or not len(boxes):
        return 0.0
    height, width = mask.shape
    cover = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        cover[max(y1, 0) : min(y2, height), max(x1, 0) : min(x2, width)] = True
    return float((cover & mask).sum() / area)


class LineCounter:
    """Crossings of a counting line, per vehicle class (supervision's LineZone).

    A crossing is one tracked vehicle changing sides, so it needs ids: configure a line
    only on cameras sampled fast enough for the tracker to follow vehicles (5 Hz or more
    at urban speeds on 352x288).
    """

    def __init__(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        self._line = sv.LineZone(
            start=sv.Point(*start),
            end=sv.Point(*end),
            triggering_anchors=(sv.Position.BOTTOM_CENTER,),
        )
        self.crossings: dict[str, int] = {}

    def update(self, tracked: sv.Detections) -> None:
        """Feed one sample of tracked detections (``tracker_id`` and ``class_name`` set)."""
        if not len(tracked):
            return
        crossed_in, crossed_out = self._line.trigger(tracked)
        names = np.asarray(tracked.data["class_name"])
        for name in names[np.asarray(crossed_in, bool) | np.asarray(crossed_out, bool)]:
            self.crossings[str(name)] = self.crossings.get(str(name), 0) + 1


def learn_zone(
    boxes_seen: Sequence[Boxes],
    frame_shape: tuple[int, int],
    min_hits: int = 2,
    dilate_share: float = 0.5,
    min_blob_share: float = 0.1,
) -> list[tuple[float, float]]:
    """A road-zone polygon (fractions of the frame) learned from boxes seen over time, in
    pixels of frames of ``frame_shape`` (empty: nothing seen)."""
    boxes = np.concatenate(
        [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes_seen]
        or [np.zeros((0, 4), np.float32)]
    )
    if not len(boxes):
        return []
    height, width = frame_shape
    heat = np.zeros((height, width), dtype=np.int32)
    xs = np.clip(((boxes[:, 0] + boxes[:, 2]) / 2).astype(int), 0, width - 1)
    ys = np.clip((boxes[:, 3] - 1).astype(int), 0, height - 1)
    np.add.at(heat, (ys, xs), 1)
    smooth = cv2.boxFilter(heat.astype(np.float32), -1, (5, 5), normalize=False)
    seen = np.asarray(smooth >= min_hits, dtype=np.uint8)
    radius = max(1, int(dilate_share * float(np.median(boxes[:, 2] - boxes[:, 0]))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    seen = np.asarray(cv2.dilate(seen, kernel), dtype=np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(seen)
    if count <= 1:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = [i + 1 for i, a in enumerate(areas) if a >= min_blob_share * areas.max()]
    points = np.column_stack(np.nonzero(np.isin(labels, keep)))[:, ::-1]
    hull = cv2.convexHull(points.astype(np.int32)).reshape(-1, 2)
    logger.info("learned a zone of %d points from %d boxes", len(hull), len(boxes))
    return [(round(float(x) / width, 4), round(float(y) / height, 4)) for x, y in hull]
