"""Fine-tune the YOLOX-Nano vehicle detector on road-camera boxes and export it with its card.

Why fine-tune: zero-shot YOLOX-Nano is under-confident on 352x288 CCTV (held-out recall
0.60 at IoU 0.3); its misses are a confidence problem, not a localisation one. The
network arrives only as ONNX (``models/artifacts/detector.onnx``), so it is converted to
torch with onnx2torch, trained, and exported back with the original input/output
contract, so ``roadsense.models.detection.yolox`` decodes it unchanged.

- Data: a folder the user names holding ``images/*.jpg|png`` + ``labels/*.txt`` (YOLO
  ``class cx cy w h``, normalised), directly or in sub-folders (``train/``, ``valid/``).
  Every label is a vehicle. It is split by *source video* (the file-name prefix), never
  by file: frames of one video are near-duplicates and would leak.
- Augmentation makes sharp stock frames look like the cameras: crop, resize to a
  288-480 px wide frame, blur, noise, JPEG q15-60, burned-in text, letterbox.
- Training: backbone frozen (unfreezing it made validation worse: BatchNorm is folded
  into the convolutions, so nothing regularises it), AdamW, cosine, EMA weights; the 76
  non-vehicle class rows are restored after every step. Loss: ``loss``.
- Export: ONNX opset 17, dynamic batch and size, checked against torch with ONNX
  Runtime, with a ``DetectorCard`` whose score threshold is the one with the lowest
  count error on the validation videos (the project's selection rule).

Nothing is downloaded: the base weights are the shipped artifact (or ``base``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from roadsense.models.card import sha256_file
from roadsense.models.detection.card import DetectorCard, DetectorInput
from roadsense.models.detection.scoring import score_detections
from roadsense.models.detection.yolox import decode
from roadsense.models.shipped import DEFAULT_DETECTOR
from roadsense.models.training.detector.data import (
    RoadBoxes,
    collate,
    read_yolo_folder,
    split_by_video,
)
from roadsense.models.training.detector.loss import LossConfig, anchor_grid, yolox_loss
from roadsense.models.training.detector.network import (
    YoloxExport,
    YoloxLogits,
    backbone_params,
    class_convs,
    load_yolox,
)

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Boxes = npt.NDArray[np.float32]
THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
"""Width, height of a JamCam frame: validation images are shown at it, as the edge sees."""


# ---------------------------------------------------------------------------- train
@dataclass(frozen=True)
class DetectorSettings:
    """How a detector is fine-tuned (recorded in its card)."""

    size: int = 640
    crop: int | None = 384
    epochs: int = 5
    batch: int = 8
    lr: float = 3e-4
    weight_decay: float = 5e-4
    warmup_steps: int = 15
    ema_decay: float = 0.98
    threads: int = 2
    seed: int = 0
    loss: LossConfig = field(default_factory=LossConfig)


class _Ema:
    """Exponential moving average of the weights, ramped in over the first steps."""

    def __init__(self, model: YoloxLogits, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay, self.steps = decay, 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: YoloxLogits) -> None:
        self.steps += 1
        d = self.decay * (1 - math.exp(-self.steps / 20))
        current = model.state_dict()
        for key, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(current[key].detach(), alpha=1 - d)


class Trainer:
    """One optimiser over the neck and head (backbone frozen); non-vehicle class rows
    are put back after every step, so people and signs keep their COCO scores."""

    def __init__(self, model: YoloxLogits, settings: DetectorSettings, total_steps: int) -> None:
        self.model, self.settings, self.total_steps = model, settings, max(1, total_steps)
        frozen = {id(p) for p in backbone_params(model)}
        trained = [p for p in model.parameters() if id(p) not in frozen]
        for p in model.parameters():
            p.requires_grad_(id(p) not in frozen)
        self.optimiser = torch.optim.AdamW(
            [
                {
                    "params": [p for p in trained if p.ndim > 1],
                    "weight_decay": settings.weight_decay,
                },
                {"params": [p for p in trained if p.ndim <= 1], "weight_decay": 0.0},
            ],
            lr=settings.lr,
        )
        self._other = torch.tensor([c for c in range(80) if c not in settings.loss.vehicle_ids])
        self._heads = [(c.weight, c.bias) for c in class_convs(model) if c.bias is not None]
        self._rows = [
            (w.detach()[self._other].clone(), b.detach()[self._other].clone())
            for w, b in self._heads
        ]
        self.ema = _Ema(model, settings.ema_decay)
        self.step_count = 0

    def step(self, images: torch.Tensor, targets: Sequence[torch.Tensor]) -> dict[str, float]:
        """One optimiser step on a batch; the loss terms before the step."""
        s = self.settings
        progress = self.step_count / self.total_steps
        lr = s.lr * min(1.0, (self.step_count + 1) / s.warmup_steps)
        lr *= 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        self.model.train()
        points, strides = anchor_grid(images.shape[2], images.shape[3])
        losses = yolox_loss(self.model(images), targets, points, strides, s.loss)
        self.optimiser.zero_grad(set_to_none=True)
        losses["loss"].backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        self.optimiser.step()
        with torch.no_grad():
            for (weight, bias), (weight0, bias0) in zip(self._heads, self._rows, strict=True):
                weight[self._other] = weight0
                bias[self._other] = bias0
        self.ema.update(self.model)
        self.step_count += 1
        return {k: float(v.detach()) for k, v in losses.items()}


@torch.no_grad()
def validation_sweep(
    model: YoloxLogits, data: RoadBoxes, thresholds: Sequence[float] = THRESHOLDS
) -> list[dict[str, float]]:
    """Recall, precision (IoU 0.3 and 0.5), F1@0.5 and count error at each score
    threshold, decoded and scored by the product code (``models.detection``)."""
    exporter = YoloxExport(model).eval()
    size = data.size
    preds: list[tuple[Boxes, npt.NDArray[np.float32]]] = []
    truths: list[Boxes] = []
    for start in range(0, len(data), 8):
        images, boxes = collate([data[i] for i in range(start, min(start + 8, len(data)))])
        for rows, truth in zip(exporter(images).numpy(), boxes, strict=True):
            found = decode(
                rows, (size, size), 1.0, (size, size), score_threshold=min(thresholds), nms_iou=0.45
            )
            preds.append(
                (np.asarray(found.xyxy, np.float32), np.asarray(found.confidence, np.float32))
            )
            truths.append(truth.numpy())
    sweep = []
    for t in thresholds:
        score = score_detections([b[c >= t] for b, c in preds], truths)
        r, p = score.recall(0.5), score.precision(0.5)
        sweep.append(
            {
                "threshold": t,
                "recall@0.3": round(score.recall(0.3), 4),
                "precision@0.3": round(score.precision(0.3), 4),
                "recall@0.5": round(r, 4),
                "precision@0.5": round(p, 4),
                "f1@0.5": round(2 * r * p / (r + p), 4) if r + p > 0 else 0.0,
                "count_error": round(score.count_error, 4),
            }
        )
    return sweep


def choose_threshold(sweep: Sequence[dict[str, float]]) -> dict[str, float]:
    """The row with the lowest count error (the project's rule), ties to the higher F1."""
    return min(sweep, key=lambda row: (row["count_error"], -row["f1@0.5"]))


@dataclass
class FineTuned:
    """The trained network (EMA weights) and what happened on the way."""

    model: YoloxLogits
    history: list[dict[str, Any]]
    validation: list[dict[str, float]]
    chosen: dict[str, float]
    train_videos: list[str]
    val_videos: list[str]
    counts: dict[str, int]


def fine_tune(
    data: str | Path | Sequence[str | Path],
    settings: DetectorSettings,
    val_videos: Sequence[str] | None = None,
    base: str | Path = DEFAULT_DETECTOR,
    progress: Callable[[int, int, float], None] | None = None,
) -> FineTuned:
    """Fine-tune ``base`` on the YOLO boxes under ``data`` (one folder or several); keep
    the EMA weights of the epoch with the best validation F1@0.5 at its count-error
    threshold."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    folders = [data] if isinstance(data, str | Path) else list(data)
    images = []
    for folder in folders:
        found = read_yolo_folder(folder)
        if not found:
            raise ValueError(f"{folder}: no images/ with labels/ found")
        images.extend(found)
    train_images, val_images, held = split_by_video(images, val_videos, settings.seed)
    model = load_yolox(base)
    train_set = RoadBoxes(train_images, settings.size, True, settings.crop, settings.seed)
    val_set = RoadBoxes(val_images, settings.size, False)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=min(settings.batch, len(train_set)),
        shuffle=True,
        collate_fn=collate,
        drop_last=True,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    trainer = Trainer(model, settings, settings.epochs * len(loader))
    history: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], list[dict[str, float]]] | None = None
    for epoch in range(1, settings.epochs + 1):
        train_set.epoch = epoch
        losses = [trainer.step(batch, targets) for batch, targets in loader]
        sweep = validation_sweep(trainer.ema.model, val_set)
        chosen = choose_threshold(sweep)
        record = {
            "epoch": epoch,
            "loss": round(float(np.mean([x["loss"] for x in losses])), 4),
            **{f"val_{k}": v for k, v in chosen.items()},
        }
        history.append(record)
        logger.info("epoch %d: %s", epoch, json.dumps(record))
        if progress is not None:
            progress(epoch, settings.epochs, chosen["f1@0.5"])
        if best is None or chosen["f1@0.5"] > best[0]:
            best = (chosen["f1@0.5"], copy.deepcopy(trainer.ema.model.state_dict()), sweep)
    assert best is not None  # epochs >= 1
    model.load_state_dict(best[1])
    return FineTuned(
        model=model.eval(),
        history=history,
        validation=best[2],
        chosen=choose_threshold(best[2]),
        train_videos=sorted({i.video for i in train_images}),
        val_videos=held,
        counts={
            "train_images": len(train_images),
            "train_boxes": int(sum(len(i.boxes) for i in train_images)),
            "val_images": len(val_images),
            "val_boxes": int(sum(len(i.boxes) for i in val_images)),
        },
    )


# --------------------------------------------------------------------------- export
def export_detector(
    tuned: FineTuned,
    out: str | Path,
    settings: DetectorSettings,
    *,
    version: str,
    data_description: str = "",
    name: str = "detector",
) -> Path:
    """Write ``out/<name>.onnx`` (opset 17, dynamic batch and size, shipped I/O
    contract) and its ``DetectorCard``; check ONNX Runtime against torch first."""
    import onnxruntime as ort

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.onnx"
    exporter = YoloxExport(tuned.model).eval()
    probe = torch.from_numpy(
        np.random.default_rng(0).uniform(0, 255, (2, 3, settings.size, settings.size))
    ).float()
    torch.onnx.export(
        exporter,
        (probe[:1],),
        str(path),
        input_names=["images"],
        output_names=["output"],
        opset_version=17,
        dynamic_axes={
            "images": {0: "batch", 2: "height", 3: "width"},
            "output": {0: "batch", 1: "anchors"},
        },
        dynamo=False,
    )
    with torch.no_grad():
        expected = exporter(probe).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": probe.numpy()})[0]
    # Scores must agree tightly; raw box channels drift ~1e-3 through float32 sums.
    score_diff = float(np.abs(got[..., 4:] - expected[..., 4:]).max())
    if score_diff > 1e-3:
        raise RuntimeError(f"{path}: ONNX Runtime and torch scores differ by {score_diff:.2e}")
    card = DetectorCard(
        kind="detector",
        name="vehicles",
        version=version,
        description=(
            "YOLOX-Nano (COCO, Megvii) fine-tuned on road-camera vehicle boxes with "
            "roadsense train detector: backbone frozen, CCTV-like degradation; score "
            "threshold chosen by count error on validation videos held out by source video."
        ),
        architecture="YOLOX-Nano (0.91 M parameters), anchor-free, strides 8/16/32",
        input=DetectorInput(
            name="images",
            width=settings.size,
            height=settings.size,
            color_order="BGR",
            scale="0-255",
            resize="letterbox",
        ),
        output_name="output",
        classes=["car", "motorcycle", "bus", "truck"],
        score_threshold=tuned.chosen["threshold"],
        nms_iou=0.45,
        min_batch=1,
        max_batch=8,
        onnx_file=path.name,
        onnx_sha256=sha256_file(path),
        opset=17,
        licence=(
            "Apache-2.0: YOLOX (Megvii, arXiv:2107.08430) and its COCO weights, fine-tuned; "
            "the training data's own licence and attribution apply (see training_data)."
        ),
        settings={
            **{k: v for k, v in asdict(settings).items() if k != "loss"},
            "loss": asdict(settings.loss),
            "backbone": "frozen",
            "threshold_rule": "lowest count error on the validation videos, ties to higher F1@0.5",
            "ort_torch_max_score_diff": score_diff,
            "history": tuned.history,
        },
        training_data={
            "description": data_description,
            "train_videos": tuned.train_videos,
            "val_videos": tuned.val_videos,
            **tuned.counts,
        },
        evaluation={
            "validation_view": "352x288 frame, JPEG q40, letterboxed",
            "validation_sweep": tuned.validation,
        },
    )
    path.with_suffix(".card.json").write_text(
        card.model_dump_json(indent=2) + "\n", encoding="utf-8"
    )
    logger.info("exported %s (score threshold %.2f)", path, card.score_threshold)
    return path
