"""The card beside a vehicle detector's ONNX: what the edge needs to run it and what it is.

Like the classifier's card (``roadsense.models.card``) it pins the artifact by sha256 and
says what the network expects; a detector's card adds the score and support thresholds and
the NMS overlap chosen on validation data, and the vehicle classes it may report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from roadsense.core.config import ConfigModel, describe_validation_error
from roadsense.core.errors import ConfigError, ModelLoadError
from roadsense.models.card import card_path_for, sha256_file
from roadsense.models.detection.support import SupportThresholds


class DetectorInput(ConfigModel):
    """How frames become the detector's input tensor."""

    name: str = Field(description="Name of the ONNX input tensor.")
    width: int = Field(gt=0, multiple_of=32, description="Input width in pixels.")
    height: int = Field(gt=0, multiple_of=32, description="Input height in pixels.")
    color_order: Literal["BGR"] = Field(description="Channel order the network expects.")
    scale: Literal["0-255"] = Field(description="Pixel values as read, not normalised.")
    resize: Literal["letterbox"] = Field(
        description="Keep the aspect ratio, pad with 114 at the right and bottom."
    )


class DetectorCard(ConfigModel):
    """Metadata of one exported vehicle detector."""

    kind: Literal["detector"] = Field(description="Always 'detector' (a measuring model).")
    name: str = Field(description="Short model name.")
    version: str = Field(description="Model version, carried in every report.")
    description: str = Field(description="What the model is and how it was made.")
    architecture: str = Field(description="Network architecture (decoding follows it).")
    input: DetectorInput = Field(description="Input tensor specification.")
    output_name: str = Field(description="Name of the ONNX output (anchors x 85 per frame).")
    classes: list[Literal["car", "motorcycle", "bus", "truck"]] = Field(
        min_length=1, description="Vehicle classes the detector may report."
    )
    score_threshold: float = Field(
        gt=0, lt=1, description="Least score of a reported box (chosen on validation data)."
    )
    support_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Least score of a box that counts because the camera's previous sample "
        "counted one in its place (temporal support, roadsense.models.detection.support); "
        "null: off.",
    )
    nms_iou: float = Field(gt=0, lt=1, description="Overlap above which boxes are merged.")
    min_batch: int = Field(ge=1, description="Smallest batch the model accepts.")
    max_batch: int = Field(ge=1, description="Largest batch the model accepts.")
    onnx_file: str = Field(description="File name of the ONNX artifact beside the card.")
    onnx_sha256: str = Field(description="sha256 of the ONNX artifact.")
    opset: int = Field(description="ONNX opset of the artifact.")
    licence: str = Field(description="Licence of the weights and their attribution.")
    settings: dict[str, Any] = Field(default_factory=dict, description="How it was made.")
    training_data: dict[str, Any] = Field(
        default_factory=dict, description="What it was trained on, and where that came from."
    )
    evaluation: dict[str, Any] = Field(
        default_factory=dict, description="Figures on data the model was not trained on."
    )

    @model_validator(mode="after")
    def _batch_range(self) -> DetectorCard:
        if self.min_batch > self.max_batch:
            raise ValueError("min_batch must not exceed max_batch")
        if self.support_threshold is not None and self.support_threshold > self.score_threshold:
            raise ValueError("support_threshold must not exceed score_threshold")
        return self

    @property
    def thresholds(self) -> SupportThresholds:
        """The score and support thresholds a camera's meter counts boxes by."""
        return SupportThresholds(self.score_threshold, self.support_threshold)


def load_detector_card(onnx_path: str | Path) -> DetectorCard:
    """Load and check the card beside a detector's ONNX (sha256 included)."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelLoadError(f"{onnx_path}: detector file not found")
    card_path = card_path_for(onnx_path)
    try:
        card = DetectorCard.model_validate(json.loads(card_path.read_text(encoding="utf-8")))
    except OSError as err:
        raise ModelLoadError(f"{card_path}: cannot read the detector card: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{card_path}: the detector card is not JSON: {err}") from err
    except ValidationError as err:
        raise ModelLoadError(describe_validation_error(str(card_path), err)) from err
    if sha256_file(onnx_path) != card.onnx_sha256:
        raise ModelLoadError(
            f"{onnx_path}: its sha256 does not match its card; the model and the card are "
            "from different exports"
        )
    return card


def parse_input_size(text: str) -> tuple[int, int]:
    """``512`` (square) or ``512x416`` (width x height) as (width, height); ConfigError
    naming the problem unless both are positive multiples of 32."""
    parts = text.strip().lower().split("x")
    if len(parts) not in (1, 2) or not all(part.strip().isdigit() for part in parts):
        raise ConfigError(f"input size {text!r}: give WIDTH or WIDTHxHEIGHT, e.g. 512x416")
    width, height = int(parts[0]), int(parts[-1])
    if not (width > 0 and height > 0 and width % 32 == 0 and height % 32 == 0):
        raise ConfigError(f"input size {text!r}: width and height must be multiples of 32")
    return width, height


def with_input_size(model: Path, width: int, height: int, folder: Path) -> Path:
    """A copy of the detector in ``folder`` whose card asks for ``width`` x ``height`` input.

    The network is fully convolutional and its graph dynamic in size, so only the card
    changes: this is how the sizes a card was chosen from are evaluated and benched."""
    card = load_detector_card(model)  # ModelLoadError naming what is wrong with it
    resized = card.model_copy(
        update={
            "input": card.input.model_copy(update={"width": width, "height": height}),
            "version": f"{card.version}@{width}x{height}",
        }
    )
    copy = folder / f"{model.stem}-{width}x{height}.onnx"
    copy.write_bytes(model.read_bytes())
    card_path_for(copy).write_text(resized.model_dump_json(indent=2), encoding="utf-8")
    return copy
