"""`roadsense train congestion --adapt MODEL --images DIR`: fit a shipped EfficientNet-Lite0
classifier to one new camera with a few dozen labelled frames.

The head is read back from the ONNX (its ``weight``, ``bias`` and ``thresholds``
initialisers), fine-tuned on the frames' frozen features (each frame and three augmented
views) with a pull towards the original weights (``head.adapt_head``), and exported again
with the same input, temperature and activation map. Needs the ``train`` extra.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from roadsense.core.errors import ModelLoadError
from roadsense.core.roi import Roi, crop_roi
from roadsense.models.card import load_card
from roadsense.models.footage.multicamera import LabelledFrame
from roadsense.models.image_sets import evaluation_classes, load_images
from roadsense.models.training.congestion.efficientnet_lite import Pooling, pretrained_lite0
from roadsense.models.training.congestion.export_lite import export_lite
from roadsense.models.training.congestion.features import extract_features
from roadsense.models.training.congestion.head import Family, LinearHead, adapt_head

logger = logging.getLogger(__name__)


def head_from_onnx(model: Path, family: Family) -> LinearHead:
    """The folded linear head an exported Lite0 classifier carries."""
    found = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(model)).graph.initializer}
    if "weight" not in found or "bias" not in found:
        raise ModelLoadError(f"{model}: no head (weight, bias) to adapt; not a Lite0 export")
    weight = np.asarray(found["weight"], np.float32)
    thresholds = np.asarray(found.get("thresholds", np.zeros(0)), np.float32)
    features = weight.shape[1]
    return LinearHead(
        family,
        weight,
        np.asarray(found["bias"], np.float32),
        thresholds,
        np.zeros(features, np.float32),
        np.ones(features, np.float32),
    )


def adapt_model(
    model: Path,
    images: Path,
    out: Path,
    *,
    name: str,
    version: str | None = None,
    roi: Roi | None = None,
    views: int = 4,
) -> Path:
    """Fine-tune ``model``'s head on the class folders of ``images`` (one camera's frames,
    cropped to ``roi`` when given) and export the adapted model to ``out``."""
    card = load_card(model)
    family: Family = "ordinal" if "ordinal" in card.architecture else "multinomial"
    if not card.architecture.startswith("EfficientNet-Lite0"):
        raise ModelLoadError(f"{model}: only EfficientNet-Lite0 classifiers can be adapted")
    data = load_images(images, evaluation_classes(images, card.labels))
    frames = [
        LabelledFrame("new-camera", str(path), 0, data.classes[label], crop_roi(image, roi))
        for image, label, path in zip(data.images, data.labels, data.files, strict=True)
    ]
    pooling: Pooling = "stages" if card.settings.get("pooling") == "stages" else "last"
    backbone = pretrained_lite0()
    features = extract_features(
        backbone, frames, card.labels, card.input, views=views, pooling=pooling
    )
    x = features.features.reshape(-1, features.features.shape[2])
    y = np.repeat(features.labels, views)
    adapted = adapt_head(head_from_onnx(model, family), x, y)
    evaluation: dict[str, Any] = {
        "adapted_from": {"model": str(model), "version": card.version},
        "adapt_frames": len(frames),
        "adapt_per_class": data.counts(),
        "note": "figures of the model it was adapted from stay in that model's card",
    }
    return export_lite(
        backbone,
        adapted,
        card.input,
        out,
        name=name,
        version=version or f"{card.version}-adapted",
        classes=card.labels,
        temperature=card.temperature,
        description=f"{card.name} {card.version} adapted to one camera with {len(frames)} "
        f"labelled frames ({images}); the head was fine-tuned, the backbone is unchanged.",
        reference_images=[f.image for f in frames[:16]],
        settings={**card.settings, "adapted_views": views},
        training_data={**card.training_data, "adapted_with": str(images)},
        evaluation=evaluation,
        pooling=pooling,
    )
