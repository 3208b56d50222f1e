"""Class activation maps as pictures, and how much of a map lies where (torch-free).

The model's map (``Classifier.explain``) is on the network's coarse grid over the region
the classifier saw; here it is centred on its own mean and clipped at zero, normalised to
sum 1, resized onto that region of the full frame, and drawn over it. Centring matters:
the map's mean is the level's whole score, and the frozen features push most cells the
same way, so the clipped raw map is nearly flat; what a picture can show is where the
evidence for the level stands above the frame's average.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from roadsense.core.roi import Roi, roi_box
from roadsense.models.preprocess import Frame

Heat = npt.NDArray[np.float32]


def heat_on_frame(
    activation: npt.NDArray[np.float32], frame_shape: tuple[int, ...], roi: Roi | None
) -> Heat:
    """The map (h x w) as mass over the whole frame: where it stands above its mean, >= 0,
    sum 1, zero outside the region (a flat map spreads evenly over the region)."""
    height, width = frame_shape[:2]
    left, top, right, bottom = roi_box(width, height, roi) if roi else (0, 0, width, height)
    centred = activation.astype(np.float32) - np.float32(activation.mean())
    positive = np.maximum(centred, 0.0)
    if float(positive.sum()) <= 0:
        positive = np.ones_like(positive)
    region = cv2.resize(positive, (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
    heat = np.zeros((height, width), np.float32)
    heat[top:bottom, left:right] = np.maximum(region, 0.0)
    return heat / max(float(heat.sum()), 1e-12)


def mass_inside(heat: Heat, box: tuple[int, int, int, int]) -> float:
    """Share of the map's mass inside a pixel box (left, top, right, bottom)."""
    left, top, right, bottom = box
    return float(heat[top:bottom, left:right].sum() / max(float(heat.sum()), 1e-12))


def overlay(frame: Frame, heat: Heat, roi: Roi | None, caption: str) -> Frame:
    """The frame with the map drawn over it (JET colours), the region outlined, a caption."""
    scaled = heat / max(float(heat.max()), 1e-12)
    colours = cv2.applyColorMap(np.asarray(scaled * 255, np.uint8), cv2.COLORMAP_JET)
    alpha = (0.6 * scaled)[..., None]
    out = np.asarray(frame, np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha
    picture = np.asarray(np.clip(out, 0, 255), np.uint8)
    if roi is not None:
        left, top, right, bottom = roi_box(frame.shape[1], frame.shape[0], roi)
        cv2.rectangle(picture, (left, top), (right - 1, bottom - 1), (255, 255, 255), 1)
    cv2.putText(
        picture,
        caption,
        (6, frame.shape[0] - 8),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return picture
