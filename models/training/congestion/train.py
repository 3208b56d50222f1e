"""`roadsense train congestion`: train the congestion CNN on labelled images, evaluate, export.

Images come as class folders (``DIR/<label>/*.png|jpg``, e.g. what ``roadsense
dataset congestion`` writes, a user's own set, or Traffic-Net/UCSD-style sets).
Preprocessing is exactly the edge's (``edge.preprocess.frames_to_tensor`` with
the card's input spec), so what the network learns from is what it will see.

A stratified slice of the folder is held out for validation (early stopping
picks the epoch on it) and reported; a separate folder (e.g. later frames of a
clip, or another camera) can be given as a hold-out that training never
touches, and is reported on its own. Export writes ONNX (opset 17, dynamic
batch, softmax probabilities) and the card, and checks ONNX Runtime against
torch within 1e-4 on real images.

Needs the ``train`` extra (torch).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from roadsense.models.card import InputSpec, ModelCard, card_path_for, sha256_file
from roadsense.models.image_sets import ImageSet, classification_report, reindex
from roadsense.models.preprocess import Frame, frames_to_tensor
from roadsense.models.training.congestion.mobilenet import MobileNetV3Small, WithSoftmax

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Progress = Callable[[int, int, float], None]
"""progress(epoch, epochs, validation_accuracy)."""


@dataclass(frozen=True)
class CnnSettings:
    """Input size and training of the CNN."""

    width: int = 160
    height: int = 128
    epochs: int = 10
    patience: int = 4
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    validation_fraction: float = 0.15
    seed: int = 0


@dataclass
class TrainedCnn:
    """The trained network and what is known about it."""

    network: MobileNetV3Small
    classes: list[str]
    input_spec: InputSpec
    settings: CnnSettings
    evaluation: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def _split(
    labels: npt.NDArray[np.int64], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Stratified (train, validation) indices."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    valid: list[int] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label)).tolist()
        cut = max(1, round(len(members) * fraction)) if len(members) > 1 else 0
        valid.extend(members[:cut])
        train.extend(members[cut:])
    return train, valid


def input_spec(settings: CnnSettings) -> InputSpec:
    """The card's input: RGB, ImageNet mean/std, stretched to the input size."""
    return InputSpec(
        name=INPUT_NAME,
        width=settings.width,
        height=settings.height,
        color_order="RGB",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize="stretch",
        dtype="float32",
        layout="NCHW",
    )


def _tensor(images: list[Frame], spec: InputSpec) -> torch.Tensor:
    return torch.from_numpy(frames_to_tensor(images, spec))


def predict(
    network: torch.nn.Module, images: list[Frame], spec: InputSpec, batch: int = 64
) -> npt.NDArray[np.float32]:
    """Class probabilities of images (eval mode)."""
    network.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            logits = network(_tensor(images[start : start + batch], spec))
            out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _augment(images: list[Frame], rng: np.random.Generator) -> list[Frame]:
    """Light training-time jitter: horizontal flips and brightness/contrast."""
    out = []
    for image in images:
        flipped = image[:, ::-1] if rng.random() < 0.5 else image
        gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
        out.append(np.clip(flipped.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8))
    return out


def train_cnn(
    data: ImageSet,
    settings: CnnSettings,
    tests: Mapping[str, ImageSet] | None = None,
    progress: Progress | None = None,
) -> TrainedCnn:
    """Train with early stopping on a stratified validation slice; evaluate on it and on
    each named test set (e.g. ``holdout``: later frames; ``unseen_camera``: another camera)."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    spec = input_spec(settings)
    train_idx, valid_idx = _split(data.labels, settings.validation_fraction, settings.seed)
    network = MobileNetV3Small(len(data.classes))
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    steps = settings.epochs * math.ceil(len(train_idx) / settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=settings.learning_rate, total_steps=max(steps, 1)
    )
    # Classes are balanced by weighting the loss, not by resampling.
    counts = np.bincount(data.labels[train_idx], minlength=len(data.classes)).astype(np.float64)
    weights = torch.tensor(
        np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(counts), 0.0),
        dtype=torch.float32,
    )
    valid_images = [data.images[i] for i in valid_idx]
    best = (-1.0, 0)
    best_state: dict[str, torch.Tensor] | None = None
    started = time.perf_counter()
    for epoch in range(settings.epochs):
        network.train()
        order = rng.permutation(train_idx)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            if len(batch) < 2:
                continue  # BatchNorm needs two samples
            images = _augment([data.images[i] for i in batch], rng)
            logits = network(_tensor(images, spec))
            target = torch.from_numpy(data.labels[batch])
            loss: torch.Tensor = torch.nn.functional.cross_entropy(logits, target, weight=weights)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
        if valid_images:
            predicted = predict(network, valid_images, spec).argmax(axis=1)
            accuracy = float((predicted == data.labels[valid_idx]).mean())
        else:
            accuracy = 0.0
        if progress:
            progress(epoch + 1, settings.epochs, accuracy)
        if accuracy > best[0]:
            best = (accuracy, epoch)
            best_state = {k: v.clone() for k, v in network.state_dict().items()}
        elif epoch - best[1] >= settings.patience:
            break
    assert best_state is not None
    network.load_state_dict(best_state)
    network.eval()
    evaluation: dict[str, Any] = {
        "validation": classification_report(
            data.labels[valid_idx],
            predict(network, valid_images, spec).argmax(axis=1),
            data.classes,
        ),
        "best_epoch": best[1] + 1,
        "training_seconds": round(time.perf_counter() - started, 1),
    }
    for name, test in (tests or {}).items():
        scored = reindex(test, data.classes)
        evaluation[name] = classification_report(
            scored.labels, predict(network, scored.images, spec).argmax(axis=1), data.classes
        )
    summary = {
        "images": len(data.images),
        "per_class": data.counts(),
        "train_images": len(train_idx),
        "validation_images": len(valid_idx),
    }
    return TrainedCnn(network, data.classes, spec, settings, evaluation, summary)


def export_cnn(
    model: TrainedCnn,
    out_dir: Path,
    *,
    name: str,
    version: str,
    description: str,
    reference_images: list[Frame],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<name>.onnx`` and its card; refuse if ONNX Runtime differs from torch > 1e-4."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    exported = WithSoftmax(model.network).eval()
    spec = model.input_spec
    example = torch.zeros(2, 3, spec.height, spec.width)
    torch.onnx.export(
        exported,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,  # the default exporter needs onnxscript (docs/pitfalls.md #6)
    )
    batch = _tensor(reference_images[:16], spec)
    with torch.no_grad():
        expected = exported(batch).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})
    difference = float(np.max(np.abs(np.asarray(got) - expected)))
    if difference > 1e-4:
        raise RuntimeError(f"ONNX Runtime differs from torch by {difference:.2e} (> 1e-4)")
    card = ModelCard(
        name=name,
        version=version,
        placeholder=False,
        description=description,
        labels=model.classes,
        input=spec,
        output_name=OUTPUT_NAME,
        min_batch=1,
        max_batch=32,
        onnx_file=path.name,
        onnx_sha256=sha256_file(path),
        opset=OPSET,
        architecture="MobileNetV3-Small (Howard et al. 2019), plain torch",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        onnx_torch_max_abs_difference=difference,
        settings=asdict(model.settings),
        training_data={**model.data, **(extra or {})},
        evaluation=model.evaluation,
    )
    document = card.model_dump(mode="json")
    card_path_for(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path
