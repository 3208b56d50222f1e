"""Augmentations that matter across cameras: what changes when the same road is seen by
another camera (scale, viewpoint, colour, optics, compression, night, rain). Torch-free.

Each call gives one random view of a region crop; the photometric part reuses
``models.footage.augment`` (lighting, night, rain, blur).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from roadsense.models.footage.augment import augment
from roadsense.models.footage.config import AugmentConfig

Image = npt.NDArray[np.uint8]

PHOTOMETRIC = AugmentConfig(lighting=0.6, blur=0.3, rain=0.1, night=0.1)
"""Probabilities of the photometric steps (night and rain are rare in real footage here)."""


def _scale_and_shift(image: Image, rng: np.random.Generator) -> Image:
    """A sub-window of 70-100 % of each side, anywhere: the road at another zoom/aim."""
    height, width = image.shape[:2]
    scale = rng.uniform(0.7, 1.0)
    w, h = max(8, round(width * scale)), max(8, round(height * rng.uniform(0.7, 1.0)))
    left = int(rng.integers(0, width - w + 1))
    top = int(rng.integers(0, height - h + 1))
    return np.ascontiguousarray(image[top : top + h, left : left + w])


def _perspective(image: Image, rng: np.random.Generator) -> Image:
    """Corners moved by up to 8 % of the size: a camera mounted higher, lower or askew."""
    height, width = image.shape[:2]
    source = np.asarray([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    jitter = rng.uniform(-0.08, 0.08, (4, 2)) * np.asarray([width, height], np.float32)
    target = np.asarray(source + jitter, np.float32)
    matrix = cv2.getPerspectiveTransform(source, target)
    warped = cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    return np.asarray(warped, dtype=np.uint8)


def _colour(image: Image, rng: np.random.Generator) -> Image:
    """Saturation and white balance of another sensor."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] *= rng.uniform(0.5, 1.4)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
    balance = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return np.asarray(np.clip(out.astype(np.float32) * balance, 0, 255), dtype=np.uint8)


def _compression(image: Image, rng: np.random.Generator) -> Image:
    """JPEG at quality 15-60: the blocky streams of low-bandwidth CCTV."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 61))])
    if not ok:
        return image
    return np.asarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR), dtype=np.uint8)


def camera_view(image: Image, rng: np.random.Generator) -> tuple[Image, list[str]]:
    """One random view of ``image`` as another camera might see it, and what was applied."""
    applied: list[str] = []
    if rng.random() < 0.8:
        image = _scale_and_shift(image, rng)
        applied.append("scale")
    if rng.random() < 0.5:
        image = _perspective(image, rng)
        applied.append("perspective")
    if rng.random() < 0.5:
        image = np.ascontiguousarray(image[:, ::-1])
        applied.append("flip")
    if rng.random() < 0.6:
        image = _colour(image, rng)
        applied.append("colour")
    image, photometric = augment(image, PHOTOMETRIC, rng)
    applied.extend(photometric)
    if rng.random() < 0.5:
        image = _compression(image, rng)
        applied.append("jpeg")
    return np.asarray(image, dtype=np.uint8), applied
