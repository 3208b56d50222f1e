"""The metadata card that travels beside every ONNX artifact.

The card says what the model expects (input size, colour order, mean/std,
resize mode, batch range) and what it returns (labels), so the edge needs no
code change for a new model. It also pins the artifact by sha256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from roadsense.core.config import ConfigModel, describe_validation_error
from roadsense.core.errors import ModelLoadError


class InputSpec(ConfigModel):
    """How frames become the model's input tensor."""

    name: str = Field(description="Name of the ONNX input tensor.")
    width: int = Field(gt=0, description="Width in pixels the frame is resized to.")
    height: int = Field(gt=0, description="Height in pixels the frame is resized to.")
    color_order: Literal["RGB", "BGR"] = Field(description="Channel order the model expects.")
    mean: tuple[float, float, float] = Field(
        description="Per-channel mean subtracted after scaling pixels to 0..1."
    )
    std: tuple[float, float, float] = Field(
        description="Per-channel standard deviation divided after the mean."
    )
    resize: Literal["stretch"] = Field(
        description="Resize mode: 'stretch' scales the whole frame to width x height."
    )
    dtype: Literal["float32"] = Field(description="Element type of the input tensor.")
    layout: Literal["NCHW"] = Field(description="Tensor layout.")


class ModelCard(ConfigModel):
    """Metadata of one exported congestion classifier."""

    name: str = Field(description="Short model name.")
    version: str = Field(description="Model version, carried in every report.")
    placeholder: bool = Field(
        description="True for a model that was not trained on labelled data; its output "
        "is not a measurement of congestion."
    )
    description: str = Field(description="What the model is and how it was made.")
    labels: list[str] = Field(min_length=2, description="Class labels, in output order.")
    input: InputSpec = Field(description="Input tensor specification.")
    output_name: str = Field(description="Name of the ONNX output tensor (probabilities).")
    cam_output_name: str | None = Field(
        default=None,
        description="Name of the ONNX output holding the class activation map of the "
        "predicted class (N x h x w: last convolutional features weighted by the head), "
        "when the model has one.",
    )
    temperature: float = Field(
        default=1.0,
        gt=0,
        description="Temperature fitted on validation data: every backend reports "
        "softmax(log p / T) of the ONNX probabilities p (1: as exported).",
    )
    min_batch: int = Field(ge=1, description="Smallest batch the model accepts.")
    max_batch: int = Field(ge=1, description="Largest batch the model accepts.")
    onnx_file: str = Field(description="File name of the ONNX artifact beside the card.")
    onnx_sha256: str = Field(description="sha256 of the ONNX artifact.")
    opset: int = Field(description="ONNX opset the model was exported with.")
    architecture: str = Field(default="", description="Network architecture.")
    created: str = Field(default="", description="When the model was exported (ISO 8601).")
    onnx_torch_max_abs_difference: float | None = Field(
        default=None, description="Largest |ONNX Runtime - torch| probability at export."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Training settings, to reproduce the model."
    )
    training_data: dict[str, Any] = Field(
        default_factory=dict, description="What the model was trained on, and where it came from."
    )
    evaluation: dict[str, Any] = Field(
        default_factory=dict, description="Figures on data the model was not trained on."
    )

    @model_validator(mode="after")
    def _batch_range(self) -> ModelCard:
        if self.min_batch > self.max_batch:
            raise ValueError("min_batch must not exceed max_batch")
        return self


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path_for(onnx_path: Path) -> Path:
    """The card that belongs to an ONNX file: same name, ``.card.json``."""
    return onnx_path.with_suffix(".card.json")


def load_card(onnx_path: str | Path) -> ModelCard:
    """Load and check the card beside an ONNX artifact (sha256 included)."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelLoadError(f"{onnx_path}: model file not found")
    card_path = card_path_for(onnx_path)
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ModelLoadError(f"{card_path}: cannot read model card: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{card_path}: model card is not valid JSON: {err}") from err
    try:
        card = ModelCard.model_validate(data)
    except ValidationError as err:
        raise ModelLoadError(describe_validation_error(str(card_path), err)) from err
    try:
        actual = sha256_file(onnx_path)
    except OSError as err:
        raise ModelLoadError(f"{onnx_path}: cannot read model: {err.strerror}") from err
    if actual != card.onnx_sha256:
        raise ModelLoadError(
            f"{onnx_path}: sha256 {actual[:12]}… does not match its card "
            f"({card.onnx_sha256[:12]}…); the model and card are from different exports"
        )
    return card
