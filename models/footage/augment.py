"""Photometric augmentations: lighting, blur, rain and night, each by probability."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from roadsense.models.footage.config import AugmentConfig

Light = tuple[float, float, float]  # x, y (bottom centre of a vehicle), vehicle width


def _lighting(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    contrast = rng.uniform(0.7, 1.3)
    brightness = rng.uniform(-40, 40)
    return cv2.convertScaleAbs(image, alpha=contrast, beta=brightness)


def _blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        size = int(rng.choice([3, 5]))
        return cv2.GaussianBlur(image, (size, size), 0)
    length = int(rng.integers(5, 10))
    kernel: np.ndarray = np.zeros((length, length), np.float32)
    kernel[:, length // 2] = 1.0  # traffic moves along the image's vertical
    angle = rng.uniform(-20, 20)
    rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1.0)
    rotated = np.asarray(cv2.warpAffine(kernel, rotation, (length, length)), np.float32)
    rotated /= max(float(rotated.sum()), 1e-6)
    blurred: np.ndarray = cv2.filter2D(image, -1, rotated)
    return blurred


def _rain(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    streaks: np.ndarray = np.zeros((height, width), np.uint8)
    slant = rng.uniform(-0.3, 0.3)
    for _ in range(int(rng.integers(150, 400))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        length = int(rng.integers(6, 18))
        end = (int(x + slant * length), y + length)
        cv2.line(streaks, (x, y), end, 255, 1)
    streaks = cv2.GaussianBlur(streaks, (3, 3), 0)
    strength = rng.uniform(0.25, 0.5) * (streaks.astype(np.float32) / 255.0)[..., None]
    hazy = image.astype(np.float32) * 0.9 + 20.0  # rain flattens contrast
    out: np.ndarray = np.clip(hazy * (1 - strength) + 210.0 * strength, 0, 255)
    return out.astype(np.uint8)


def _night(image: np.ndarray, lights: Sequence[Light], rng: np.random.Generator) -> np.ndarray:
    out: np.ndarray = image.astype(np.float32) * rng.uniform(0.2, 0.4)
    out *= np.array([1.25, 1.0, 0.8], np.float32)  # BGR: blue tint
    glow: np.ndarray = np.zeros(image.shape[:2], np.float32)
    for x, y, width in lights:
        radius = max(1, round(width * 0.12))
        for side in (-0.3, 0.3):
            centre = (round(x + side * width), round(y - radius))
            cv2.circle(glow, centre, radius, 1.0, -1)
    if lights:
        glow = cv2.GaussianBlur(glow, (0, 0), 3)
        out += glow[..., None] * np.array([200.0, 230.0, 255.0], np.float32)
    out += rng.normal(0.0, rng.uniform(4, 10), out.shape).astype(np.float32)
    result: np.ndarray = np.clip(out, 0, 255).astype(np.uint8)
    return result


def augment(
    image: np.ndarray,
    config: AugmentConfig,
    rng: np.random.Generator,
    lights: Sequence[Light] = (),
) -> tuple[np.ndarray, list[str]]:
    """The augmented image and the names of the augmentations applied, in order.

    ``lights`` are vehicle positions for headlight glow at night (composites know
    them; real frames pass none).
    """
    steps: list[tuple[str, float, Callable[[np.ndarray], np.ndarray]]] = [
        ("lighting", config.lighting, lambda im: _lighting(im, rng)),
        ("night", config.night, lambda im: _night(im, lights, rng)),
        ("rain", config.rain, lambda im: _rain(im, rng)),
        ("blur", config.blur, lambda im: _blur(im, rng)),
    ]
    applied: list[str] = []
    for name, probability, step in steps:
        if rng.random() < probability:
            image = step(image)
            applied.append(name)
    return image, applied
