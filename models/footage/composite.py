"""Composite congested scenes: vehicles cut from the footage pasted back along lanes.

Background: per-pixel median of sampled frames. Crops: connected components of the
difference from that background inside the ROI (shadows excluded), with their alpha
mask and the image row of their bottom edge. Apparent size grows linearly with the
image row (a pinhole camera over a flat road); the line is fitted to the crops' widths.
Density is vehicles per apparent vehicle size of lane length (0 empty, 1 bumper to
bumper), so spacing shrinks with distance the way it does on the real road.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np

from roadsense.core.errors import FootageError
from roadsense.models.footage.config import CompositeConfig, RoiConfig
from roadsense.models.footage.video import Frame, roi_mask

logger = logging.getLogger(__name__)

MIN_CROPS = 3


@dataclass(frozen=True)
class VehicleCrop:
    """One vehicle cut from a frame: pixels, alpha mask, where it stood."""

    image: np.ndarray  # BGR, h x w
    alpha: np.ndarray  # float32, h x w, 0..1
    x_center: float
    y_bottom: float
    frame_index: int

    @property
    def width(self) -> int:
        """Width of the crop in pixels."""
        return int(self.image.shape[1])


@dataclass(frozen=True)
class SizeModel:
    """Apparent vehicle width (px) as a linear function of the image row."""

    intercept: float
    slope: float

    def size_at(self, y: float) -> float:
        """Apparent vehicle width at row ``y`` (at least one pixel)."""
        return max(self.intercept + self.slope * y, 1.0)


@dataclass(frozen=True)
class Placement:
    """One pasted vehicle: which crop, where (bottom centre), how big."""

    lane: int
    crop: int
    x: float
    y: float
    scale: float
    width: int
    height: int


def clean_background(frames: Sequence[Frame]) -> np.ndarray:
    """Per-pixel median of the frames: the road with the traffic taken out."""
    if len(frames) < 3:
        raise FootageError(f"a background needs at least 3 frames, got {len(frames)}")
    median: np.ndarray = np.median(np.stack(frames), axis=0)
    return median.astype(np.uint8)


def vehicle_mask(frame: Frame, background: np.ndarray, config: CompositeConfig) -> np.ndarray:
    """Pixels that differ from the background by colour, shadows excluded (uint8 0/255)."""
    frame_f = frame.astype(np.float32) + 1.0
    background_f = background.astype(np.float32) + 1.0
    different = np.abs(frame_f - background_f).max(axis=2) > config.diff_threshold
    ratio = frame_f / background_f
    mean_ratio = ratio.mean(axis=2)
    low, high = config.shadow_ratio
    same_hue = np.abs(ratio - mean_ratio[..., None]).max(axis=2) < 0.12
    shadow = (mean_ratio > low) & (mean_ratio < high) & same_hue
    mask = np.where(different & ~shadow, 255, 0).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    closed: np.ndarray = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, kernel, iterations=3)
    return closed


def extract_crops(
    frames: Sequence[tuple[int, Frame]],
    background: np.ndarray,
    roi: RoiConfig,
    config: CompositeConfig,
) -> list[VehicleCrop]:
    """Vehicle-sized, vehicle-shaped components inside the ROI of each frame."""
    inside = roi_mask(roi)
    crops: list[VehicleCrop] = []
    low_aspect, high_aspect = config.crop_aspect
    for index, frame in frames:
        mask = np.where(inside, vehicle_mask(frame, background, config), 0).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        height, width = mask.shape
        for component in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[component])
            if not config.crop_min_area_px <= area <= config.crop_max_area_px:
                continue
            if not low_aspect <= w / h <= high_aspect or area / (w * h) < config.crop_min_fill:
                continue
            if x == 0 or y == 0 or x + w >= width or y + h >= height:
                continue  # cut off by the frame edge
            blob = (labels[y : y + h, x : x + w] == component).astype(np.uint8)
            hull = cv2.convexHull(cv2.findNonZero(blob))
            solid = np.zeros_like(blob)
            cv2.fillConvexPoly(solid, hull, 1)  # windscreens often match the road's colour
            alpha = cv2.GaussianBlur(solid.astype(np.float32), (3, 3), 0)
            image = frame[y : y + h, x : x + w].copy()
            crops.append(VehicleCrop(image, alpha, x + w / 2, float(y + h), index))
            if len(crops) >= config.max_crops:
                return crops
    return crops


def fit_size_model(crops: Sequence[VehicleCrop]) -> SizeModel:
    """Least-squares line of crop width against the crop's bottom row."""
    if len(crops) < MIN_CROPS:
        raise FootageError(
            f"only {len(crops)} vehicle crops found (need {MIN_CROPS}); check the ROI "
            "and the crop filters"
        )
    rows = np.array([c.y_bottom for c in crops])
    widths = np.array([c.width for c in crops], np.float64)
    if np.ptp(rows) < 10:
        raise FootageError("vehicle crops all sit on the same rows; cannot fit perspective")
    slope, intercept = np.polyfit(rows, widths, 1)
    if slope <= 0:
        raise FootageError(
            f"vehicle width does not grow towards the camera (slope {slope:.3f}); "
            "the footage config may not match this view"
        )
    return SizeModel(float(intercept), float(slope))


def _lane_samples(lane: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Points along the lane polyline about one pixel apart, and their arc lengths."""
    points = np.array(lane, np.float64)
    dense = [points[0]]
    for start, end in pairwise(points):
        steps = max(int(np.ceil(np.linalg.norm(end - start))), 1)
        dense.extend(start + (end - start) * t for t in np.arange(1, steps + 1) / steps)
    path = np.array(dense)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    return path, arc


def lane_units(lane: Sequence[tuple[int, int]], sizes: SizeModel) -> tuple[np.ndarray, np.ndarray]:
    """Points of the lane and, at each, the lane length so far in apparent vehicle sizes."""
    path, arc = _lane_samples(lane)
    per_px = 1.0 / np.array([sizes.size_at(y) for y in path[:, 1]])
    units = np.concatenate([[0.0], np.cumsum(np.diff(arc) * (per_px[1:] + per_px[:-1]) / 2)])
    return path, units


def vehicles_for(density: float, lane: Sequence[tuple[int, int]], sizes: SizeModel) -> int:
    """How many vehicles a lane holds at ``density``."""
    _, units = lane_units(lane, sizes)
    return round(density * float(units[-1]))


def _pick_crop(
    crops: Sequence[VehicleCrop],
    sizes: SizeModel,
    y: float,
    max_upscale: float,
    rng: np.random.Generator,
) -> int:
    """A random crop that needs at most ``max_upscale`` (blown-up crops look blurred)."""
    target = sizes.size_at(y)
    fits = [i for i, c in enumerate(crops) if target / sizes.size_at(c.y_bottom) <= max_upscale]
    pool = fits or range(len(crops))
    return int(pool[int(rng.integers(0, len(pool)))])


def plan_placements(
    lanes: Sequence[Sequence[tuple[int, int]]],
    crops: Sequence[VehicleCrop],
    sizes: SizeModel,
    density: float,
    rng: np.random.Generator,
    *,
    max_upscale: float = 1.5,
) -> list[Placement]:
    """Vehicles spread evenly (with jitter) along each lane, sorted far to near."""
    placements: list[Placement] = []
    for lane_index, lane in enumerate(lanes):
        path, units = lane_units(lane, sizes)
        count = round(density * float(units[-1]))
        for slot in range(count):
            u = (slot + 0.5 + rng.uniform(-0.3, 0.3)) / count * float(units[-1])
            x = float(np.interp(u, units, path[:, 0]))
            y = float(np.interp(u, units, path[:, 1]))
            crop_index = _pick_crop(crops, sizes, y, max_upscale, rng)
            crop = crops[crop_index]
            scale = sizes.size_at(y) / sizes.size_at(crop.y_bottom)
            height, width = crop.image.shape[:2]
            placements.append(
                Placement(
                    lane_index,
                    crop_index,
                    x,
                    y,
                    scale,
                    max(round(width * scale), 1),
                    max(round(height * scale), 1),
                )
            )
    placements.sort(key=lambda p: p.y)  # far first, so nearer vehicles cover them
    return placements


def render(
    background: np.ndarray, crops: Sequence[VehicleCrop], placements: Sequence[Placement]
) -> np.ndarray:
    """Paste the placements onto a copy of the background in order (far to near)."""
    canvas = background.astype(np.float32)
    frame_h, frame_w = canvas.shape[:2]
    for placement in placements:
        crop = crops[placement.crop]
        size = (placement.width, placement.height)
        image = cv2.resize(crop.image, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = cv2.resize(crop.alpha, size, interpolation=cv2.INTER_LINEAR)
        left = round(placement.x - placement.width / 2)
        top = round(placement.y) - placement.height
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + placement.width, frame_w), min(top + placement.height, frame_h)
        if x1 <= x0 or y1 <= y0:
            continue
        a = alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
        patch = image[y0 - top : y1 - top, x0 - left : x1 - left]
        region = canvas[y0:y1, x0:x1]
        canvas[y0:y1, x0:x1] = region * (1 - a) + patch * a
    return np.clip(canvas, 0, 255).astype(np.uint8)


def level_for_density(density: float, config: CompositeConfig) -> int:
    """The congestion level a composite of this density carries."""
    return int(np.searchsorted(np.asarray(config.density_bands), density, side="right"))


def density_range(level: int, config: CompositeConfig) -> tuple[float, float]:
    """Densities that map onto ``level``: [low, high)."""
    edges = [0.0, *config.density_bands, config.max_density]
    return edges[level], edges[level + 1]


@dataclass(frozen=True)
class Composite:
    """One generated scene."""

    image: np.ndarray
    density: float
    level: int
    placements: list[Placement]


class Compositor:
    """Generates composites of a chosen level from one background and its crops."""

    def __init__(
        self,
        background: np.ndarray,
        crops: Sequence[VehicleCrop],
        config: CompositeConfig,
        sizes: SizeModel | None = None,
    ) -> None:
        self.background = background
        self.crops = list(crops)
        self.config = config
        self.sizes = sizes or fit_size_model(self.crops)
        if not self.crops:
            raise FootageError("no vehicle crops to composite with")

    def make(self, level: int, rng: np.random.Generator) -> Composite:
        """A scene whose density falls in ``level``'s band (so its label is that level)."""
        low, high = density_range(level, self.config)
        density = float(rng.uniform(low, high))
        while level_for_density(density, self.config) != level:  # float edge: resample
            density = float(rng.uniform(low, high))
        placements = plan_placements(
            self.config.lanes,
            self.crops,
            self.sizes,
            density,
            rng,
            max_upscale=self.config.max_upscale,
        )
        image = render(self.background, self.crops, placements)
        return Composite(image, density, level, placements)
