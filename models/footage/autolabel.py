"""Auto-labels for unlabelled footage: ROI occupancy and motion give a congestion level.

Occupancy is the share of ROI pixels that MOG2 calls foreground (shadows excluded,
mask opened and closed); motion is the median Farneback flow magnitude over those
pixels that carry texture (inside a uniform car body the flow is near zero whatever
the car does), in full-size pixels per frame. Occupancy bands give a density level, and a
dense ROI that barely moves is pushed up (a jam is dense and slow; with
``jam_requires_slow`` a dense ROI that flows stops at the level below the last). The labels are
heuristics measured on pixels, not human judgement.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from roadsense.models.footage.config import AutolabelConfig, FootageConfig
from roadsense.models.footage.video import Frame, check_frame_size, read_frames, roi_mask

logger = logging.getLogger(__name__)

SHADOW_CUTOFF = 200  # MOG2 marks shadows 127 and foreground 255


@dataclass(frozen=True)
class FrameLabel:
    """The auto-label of one frame."""

    index: int
    occupancy: float
    motion: float | None  # None: too little foreground to measure
    level: int
    label: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def level_for(occupancy: float, motion: float | None, config: AutolabelConfig) -> int:
    """Level index from occupancy bands, raised when the ROI is dense and slow."""
    level = int(np.searchsorted(np.asarray(config.occupancy_bands), occupancy, side="right"))
    slow = motion is not None and motion < config.slow_motion_px
    if slow and occupancy >= config.slow_min_occupancy:
        level += config.slow_level_boost
    last = len(config.occupancy_bands)
    if config.jam_requires_slow and level >= last and not slow:
        return last - 1  # dense but flowing is heavy traffic, not a jam
    return min(level, last)


class Autolabeller:
    """Feed it every frame in order; it labels the frames it is asked to measure."""

    def __init__(self, config: FootageConfig) -> None:
        self._config = config
        settings = config.autolabel
        self._scale = settings.analysis_scale
        self._roi = roi_mask(config.roi, self._scale)
        self._roi_px = int(self._roi.sum())
        ys, xs = np.nonzero(self._roi)
        self._box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        self._size = (self._roi.shape[1], self._roi.shape[0])
        self._subtractor = cv2.createBackgroundSubtractorMOG2(
            history=settings.mog2_history,
            varThreshold=settings.mog2_var_threshold,
            detectShadows=True,
        )
        self._kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (settings.kernel_px, settings.kernel_px)
        )
        self._previous: np.ndarray | None = None
        self._index = -1

    def observe(self, frame: Frame, measure: bool = True) -> FrameLabel | None:
        """Update the background with ``frame``; its label when measured after warm-up."""
        self._index += 1
        small = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        raw = self._subtractor.apply(small)
        previous, self._previous = self._previous, gray
        settings = self._config.autolabel
        if not measure or self._index < settings.warmup_frames or previous is None:
            return None
        mask: np.ndarray = np.where(raw > SHADOW_CUTOFF, 255, 0).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._kernel, iterations=2)
        foreground = (mask > 0) & self._roi
        count = int(foreground.sum())
        occupancy = count / self._roi_px
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
        textured = foreground & (np.hypot(gx, gy) >= settings.min_gradient)
        motion = None
        if int(textured.sum()) >= settings.min_foreground_px:
            flow = cv2.calcOpticalFlowFarneback(  # type: ignore[call-overload]
                previous[self._box], gray[self._box], None, 0.5, 2, 9, 2, 5, 1.1, 0
            )
            magnitude = np.hypot(flow[..., 0], flow[..., 1])
            motion = float(np.median(magnitude[textured[self._box]])) / self._scale
        level = level_for(occupancy, motion, settings)
        return FrameLabel(self._index, occupancy, motion, level, self._config.labels[level])


def autolabel_video(video: Path, config: FootageConfig, every: int = 1) -> list[FrameLabel]:
    """Labels of every ``every``-th frame after warm-up (all frames feed the background)."""
    if every < 1:
        raise ValueError("every must be at least 1")
    labeller = Autolabeller(config)
    labels: list[FrameLabel] = []
    for index, frame in enumerate(read_frames(video)):
        if index == 0:
            check_frame_size(frame, config.roi, video)
        label = labeller.observe(frame, measure=index % every == 0)
        if label is not None:
            labels.append(label)
    logger.info("auto-labelled %d frames of %s", len(labels), video.name)
    return labels


def label_counts(labels: Iterable[FrameLabel], names: Sequence[str]) -> dict[str, int]:
    """How many frames carry each label, every label present (zero included)."""
    counts = Counter(label.label for label in labels)
    return {name: counts.get(name, 0) for name in names}
