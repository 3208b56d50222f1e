"""Vehicles drawn on a frame: the evidence of a measurement, for the edge and the cloud.

Every vehicle that counted is boxed (green moving, red stopped) with its class and track
id, the road zone is outlined in yellow, and a line of text sits in a black band at the
top. A person looking at it can check each number against the road.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from roadsense.models.preprocess import Frame

MOVING = (80, 200, 60)
STOPPED = (40, 40, 230)
ZONE = (0, 220, 255)


def draw_vehicles(
    frame: Frame,
    xyxy: npt.NDArray[np.float32],
    classes: Sequence[str],
    *,
    stopped: Sequence[bool] | None = None,
    track_ids: Sequence[int] | None = None,
    zone: npt.NDArray[np.float64] | None = None,
    text: str = "",
) -> Frame:
    """A copy of ``frame`` with the vehicles, the zone (pixels, N x 2) and ``text`` drawn."""
    still = frame.copy()
    width = still.shape[1]
    thin = max(1, round(width / 400))
    if zone is not None and len(zone):
        outline = np.round(zone).astype(np.int32)
        cv2.polylines(still, [outline], isClosed=True, color=ZONE, thickness=thin)
    for i, (box, name) in enumerate(zip(xyxy, classes, strict=True)):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        colour = STOPPED if stopped is not None and stopped[i] else MOVING
        cv2.rectangle(still, (x1, y1), (x2, y2), colour, thin)
        track = track_ids[i] if track_ids is not None else -1
        label = f"{name[0]}{track}" if track >= 0 else name[0]
        cv2.putText(still, label, (x1, max(8, y1 - 2)), cv2.FONT_HERSHEY_PLAIN, 0.7, colour, 1)
    if text:
        # The largest text that fits the frame's width, in a black band at the top.
        (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
        scale = min(1.0, (width - 8) / text_w)
        band = round(text_h * scale) + 8
        cv2.rectangle(still, (0, 0), (width, band), (0, 0, 0), -1)
        cv2.putText(still, text, (4, band - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1)
    return still
