"""Configuration of the measurement: ``[measure]`` (the detector) and each camera's
``[cameras.rule]`` (the level rule's thresholds)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from roadsense.core.config import ConfigModel
from roadsense.models.detection.rule import RuleThresholds


class RuleConfig(ConfigModel):
    """Thresholds of the level rule (roadsense.models.detection.rule), per camera."""

    light_occupancy: float = Field(default=0.08, ge=0, le=1, description="Light from here.")
    moderate_occupancy: float = Field(default=0.10, ge=0, le=1, description="Moderate from here.")
    heavy_occupancy: float = Field(
        default=0.25, ge=0, le=1, description="Heavy from here, with heavy_stopped."
    )
    jam_occupancy: float = Field(
        default=0.35, ge=0, le=1, description="Jammed from here, with jam_stopped."
    )
    moderate_stopped: float = Field(
        default=0.70, ge=0, le=1, description="Stopped share that makes light occupancy moderate."
    )
    heavy_stopped: float = Field(default=0.15, ge=0, le=1, description="Stopped share for heavy.")
    jam_stopped: float = Field(default=0.60, ge=0, le=1, description="Stopped share for jammed.")

    def thresholds(self) -> RuleThresholds:
        """The rule's thresholds (ValueError when they do not rise)."""
        return RuleThresholds(**self.model_dump())


class MeasureConfig(ConfigModel):
    """Measuring the road with a vehicle detector instead of classifying the picture."""

    enabled: bool = Field(
        default=False,
        description="Detect, track and measure vehicles in each camera's road zone; reports "
        "carry the measurements and the level by the rule (schema version 2). false: the "
        "scene classifier's level, as before.",
    )
    type: Literal["onnxruntime", "tensorrt", "auto"] = Field(
        default="onnxruntime", description="Detector backend (as for the classifier)."
    )
    model: Path | None = Field(
        default=None, description="Detector ONNX with its card; the shipped one when absent."
    )
    intra_op_threads: int = Field(default=0, ge=0, description="ONNX Runtime intra-op threads.")
