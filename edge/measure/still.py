"""The evidence of a reading: the frame with what was measured drawn on it.

Every vehicle that counted is boxed (green moving, red stopped) with its class and track
id, the road zone is outlined in yellow, and the measurements are written in a band at
the top: vehicles, stopped, occupancy and the level. A person looking at it can check each
number against the road, which is what makes a reading explainable.
"""

from __future__ import annotations

import cv2
import numpy as np

from roadsense.edge.measure.window import Sample
from roadsense.edge.measure.zone import Polygon, to_pixels
from roadsense.models.preprocess import Frame

MOVING = (80, 200, 60)
STOPPED = (40, 40, 230)
ZONE = (0, 220, 255)


def draw_evidence(frame: Frame, sample: Sample, zone: Polygon | None) -> Frame:
    """A copy of ``frame`` with the sample's vehicles, the zone and the figures drawn."""
    still = frame.copy()
    height, width = still.shape[:2]
    thin = max(1, round(width / 400))
    if zone:
        outline = np.round(to_pixels(zone, (height, width))).astype(np.int32)
        cv2.polylines(still, [outline], isClosed=True, color=ZONE, thickness=thin)
    for box, name, track, stopped in zip(
        sample.xyxy, sample.classes, sample.track_ids, sample.stopped, strict=True
    ):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        colour = STOPPED if stopped else MOVING
        cv2.rectangle(still, (x1, y1), (x2, y2), colour, thin)
        label = f"{name[0]}{track}" if track >= 0 else name[0]
        cv2.putText(still, label, (x1, max(8, y1 - 2)), cv2.FONT_HERSHEY_PLAIN, 0.7, colour, 1)
    stopped_count = int(sample.stopped.sum())
    text = (
        f"{sample.vehicles} vehicles, {stopped_count} stopped, "
        f"occupancy {sample.occupancy:.2f}, {sample.level}"
    )
    band = max(14, height // 18)
    cv2.rectangle(still, (0, 0), (width, band), (0, 0, 0), -1)
    cv2.putText(still, text, (4, band - 4), cv2.FONT_HERSHEY_SIMPLEX, band / 36, (255, 255, 255), 1)
    return still
