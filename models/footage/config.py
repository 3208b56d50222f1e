"""The footage configuration: one TOML file per camera view (ROI, lanes, thresholds)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from roadsense.core.config import ConfigModel, load_config
from roadsense.core.errors import ConfigError
from roadsense.models.congestion_labels import CONGESTION_LABELS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

Point = tuple[int, int]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def _increasing(name: str, values: list[float]) -> None:
    if any(b <= a for a, b in pairwise(values)):
        raise ValueError(f"{name} must be strictly increasing, got {values}")


class RoiConfig(ConfigModel):
    """Where the road is in the picture."""

    frame_width: int = Field(gt=0, description="width of the video the polygon is drawn on (px)")
    frame_height: int = Field(gt=0, description="height of the video the polygon is drawn on (px)")
    polygon: list[Point] = Field(
        min_length=3, description="road region of interest, [x, y] pixel vertices in order"
    )

    @model_validator(mode="after")
    def _inside_frame(self) -> RoiConfig:
        for x, y in self.polygon:
            if not (0 <= x < self.frame_width and 0 <= y < self.frame_height):
                raise ValueError(
                    f"polygon vertex [{x}, {y}] lies outside the "
                    f"{self.frame_width}x{self.frame_height} frame"
                )
        return self


class AutolabelConfig(ConfigModel):
    """Occupancy and motion measured in the ROI, and how they map onto levels."""

    analysis_scale: float = Field(
        default=0.5, gt=0.0, le=1.0, description="frames are shrunk by this factor first"
    )
    warmup_frames: int = Field(
        default=120, ge=1, description="frames that train the background model, never labelled"
    )
    mog2_history: int = Field(default=500, ge=1, description="MOG2 history (frames)")
    mog2_var_threshold: float = Field(default=16.0, gt=0, description="MOG2 varThreshold")
    kernel_px: int = Field(
        default=3, ge=1, description="size of the open/close kernel that cleans the mask"
    )
    min_foreground_px: int = Field(
        default=10, ge=1, description="fewer textured foreground px than this: no motion measured"
    )
    min_gradient: float = Field(
        default=40.0,
        ge=0,
        description="Sobel magnitude a foreground pixel needs for its flow to count "
        "(flow inside uniform car bodies reads near zero)",
    )
    occupancy_bands: list[Fraction] = Field(
        description="upper occupancy edge of every level but the last (free, light, ...)"
    )
    slow_motion_px: float = Field(
        gt=0, description="median flow below this (full-size px/frame) counts as slow"
    )
    slow_min_occupancy: Fraction = Field(
        description="the slow rule applies only at or above this occupancy"
    )
    jam_requires_slow: bool = Field(
        default=True, description="the last level needs slow motion, not density alone"
    )
    slow_level_boost: int = Field(
        default=1, ge=0, description="levels added when the ROI is dense and slow"
    )

    @model_validator(mode="after")
    def _bands_increase(self) -> AutolabelConfig:
        _increasing("occupancy_bands", self.occupancy_bands)
        return self


class CompositeConfig(ConfigModel):
    """How vehicles are cut from the footage and pasted back along lanes."""

    lanes: list[list[Point]] = Field(
        min_length=1, description="lane centre lines, [x, y] points from far (top) to near"
    )
    density_bands: list[Fraction] = Field(
        description="upper density edge of every level but the last; density = vehicles per "
        "apparent vehicle size of lane length (0: empty, 1: bumper to bumper)"
    )
    max_density: float = Field(
        default=0.9, gt=0, le=1.5, description="densest composite made for the last level"
    )
    background_frames: int = Field(
        default=60, ge=3, description="sampled frames whose per-pixel median is the background"
    )
    diff_threshold: int = Field(
        default=35,
        ge=1,
        le=255,
        description="colour difference from the background that is a vehicle",
    )
    shadow_ratio: tuple[float, float] = Field(
        default=(0.35, 0.85),
        description="a pixel this much darker than the background, same hue, is a shadow",
    )
    crop_min_area_px: int = Field(default=120, ge=1, description="smallest vehicle crop (px)")
    crop_max_area_px: int = Field(default=12000, ge=1, description="largest vehicle crop (px)")
    crop_aspect: tuple[float, float] = Field(
        default=(0.5, 2.0), description="allowed width/height of a crop"
    )
    crop_min_fill: Fraction = Field(
        default=0.45, description="least share of its box a crop's mask must fill"
    )
    max_upscale: float = Field(
        default=1.5, ge=1.0, description="largest enlargement of a crop (farther crops blur)"
    )
    max_crops: int = Field(default=400, ge=1, description="most crops kept")

    @model_validator(mode="after")
    def _check(self) -> CompositeConfig:
        _increasing("density_bands", self.density_bands)
        if self.density_bands and self.max_density <= self.density_bands[-1]:
            raise ValueError("max_density must exceed the last density band")
        for lane in self.lanes:
            if len(lane) < 2:
                raise ValueError("a lane needs at least two points")
        return self


class AugmentConfig(ConfigModel):
    """How often each augmentation is applied (probabilities per image)."""

    lighting: Fraction = Field(default=0.5, description="brightness/contrast change")
    blur: Fraction = Field(default=0.3, description="Gaussian or motion blur")
    rain: Fraction = Field(default=0.15, description="rain streaks")
    night: Fraction = Field(default=0.15, description="darkened, blue tint, glow, noise")


class DatasetConfig(ConfigModel):
    """How real frames are sampled and mixed with composites."""

    sample_every: int = Field(
        default=10, ge=1, description="every Nth frame is a real-frame candidate"
    )
    min_composite_fraction: Fraction = Field(
        default=0.25,
        description="least share of composites in every class, so that 'composite' never "
        "predicts the class",
    )
    augment_real: bool = Field(
        default=True, description="augment real frames like composites (same cue in both)"
    )


class FootageConfig(ConfigModel):
    """One camera view: where the road is and how its frames become training data."""

    labels: list[str] = Field(
        default=list(CONGESTION_LABELS), min_length=2, description="classes, free to jammed"
    )
    roi: RoiConfig = Field(description="the road region")
    autolabel: AutolabelConfig = Field(description="auto-labelling thresholds")
    composite: CompositeConfig = Field(description="vehicle crops and lanes")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="augmentations")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig, description="dataset mix")

    @model_validator(mode="after")
    def _bands_match_labels(self) -> FootageConfig:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels repeat: {self.labels}")
        wanted = len(self.labels) - 1
        for name, bands in (
            ("autolabel.occupancy_bands", self.autolabel.occupancy_bands),
            ("composite.density_bands", self.composite.density_bands),
        ):
            if len(bands) != wanted:
                raise ValueError(f"{name} needs {wanted} edges for {len(self.labels)} labels")
        return self


def load_footage_config(path: Path) -> FootageConfig:
    """Read and validate a footage TOML file."""
    return load_config(FootageConfig, path)


def default_config_path(video: Path) -> Path:
    """The shipped config for a clip (``configs/<video stem>.toml``); error when none."""
    path = CONFIG_DIR / f"{video.stem}.toml"
    if not path.is_file():
        raise ConfigError(f"no shipped footage config for {video.name}; pass --config")
    return path
