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
  non-vehicle class rows are restored after every step. Loss: ``detector_loss``.
- Export: ONNX opset 17, dynamic batch and size, checked against torch with ONNX
  Runtime, with a ``DetectorCard`` whose score threshold is the one with the lowest
  count error on the validation videos (the project's selection rule).

Nothing is downloaded: the base weights are the shipped artifact (or ``base``).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import logging
import math
import random
import re
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional

from roadsense.models.card import sha256_file
from roadsense.models.detection.card import DetectorCard, DetectorInput
from roadsense.models.detection.scoring import score_detections
from roadsense.models.detection.yolox import PAD_VALUE, decode
from roadsense.models.training.detector_loss import LossConfig, anchor_grid, yolox_loss

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Boxes = npt.NDArray[np.float32]
SHIPPED_DETECTOR = Path(__file__).resolve().parents[1] / "artifacts" / "detector.onnx"
THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
CCTV_FRAME = (352, 288)
"""Width, height of a JamCam frame: validation images are shown at it, as the edge sees."""


# ---------------------------------------------------------------- the network in torch
def _stand_in_torchvision() -> None:
    """onnx2torch imports torchvision at import time for its NMS and RoIAlign converters,
    which YOLOX does not use; a torchvision built for another torch fails to import (and
    the ``train`` extra does not need it). Register an empty module in its place when
    no working torchvision exists; a converter that needed it would fail loudly."""
    if "torchvision" in sys.modules:
        return
    if importlib.util.find_spec("torchvision") is not None:
        try:
            importlib.import_module("torchvision")
        except Exception:  # a torchvision for another torch raises anything
            logger.info("torchvision does not import; onnx2torch gets a stand-in")
        else:
            return
    stand_in = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")

    def unavailable(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("torchvision is not installed (onnx2torch got a stand-in)")

    for name in ("nms", "roi_align", "batched_nms", "box_convert"):
        setattr(ops, name, unavailable)
    stand_in.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"] = stand_in
    sys.modules["torchvision.ops"] = ops


class YoloxLogits(nn.Module):
    """The converted graph, returning ``[B, N, 85]`` logits: raw box, objectness, classes."""

    def __init__(self, levels: nn.Module) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.levels(images)
        return torch.cat([m.flatten(2) for m in maps], dim=2).permute(0, 2, 1)


class YoloxExport(nn.Module):
    """The shipped output contract: objectness and class channels through a sigmoid."""

    def __init__(self, logits: YoloxLogits) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.logits(images)
        return torch.cat([out[..., :4], out[..., 4:].sigmoid()], dim=-1)


def _concat_inputs(node: Any) -> list[Any]:
    return list(node.args[0]) if isinstance(node.args[0], list | tuple) else list(node.args)


def load_yolox(onnx_path: str | Path = SHIPPED_DETECTOR) -> YoloxLogits:
    """The YOLOX ONNX as a torch module returning logits (for the loss).

    In the fx graph each level's ``Concat(box, Sigmoid(obj), Sigmoid(cls))`` loses its two
    sigmoids and becomes an output (the Reshape/Concat tail is replaced by
    ``YoloxLogits``), and ``x * sigmoid(x)`` becomes ``functional.silu`` (a fifth faster on CPU).
    """
    _stand_in_torchvision()
    module = importlib.import_module("onnx2torch").convert(str(onnx_path))
    graph = module.graph
    output = next(n for n in graph.nodes if n.op == "output")
    final = output.args[0]
    while not (final.op == "call_module" and str(final.target).startswith("Concat")):
        final = final.args[0]
    levels = [reshape.args[0] for reshape in _concat_inputs(final)]
    for level in levels:
        parts = [
            p.args[0] if p.op == "call_module" and str(p.target).startswith("Sigmoid") else p
            for p in _concat_inputs(level)
        ]
        level.args = (
            (parts, *level.args[1:]) if isinstance(level.args[0], list | tuple) else tuple(parts)
        )
    output.args = (tuple(levels),)
    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("Mul") and len(node.args) == 2:
            x, gate = node.args
            is_sigmoid = getattr(gate, "op", "") == "call_module" and str(gate.target).startswith(
                "Sigmoid"
            )
            if is_sigmoid and gate.args[0] is x:
                with graph.inserting_before(node):
                    silu = graph.call_function(functional.silu, (x,))
                node.replace_all_uses_with(silu)
                graph.erase_node(node)
    graph.eliminate_dead_code()
    module.recompile()
    module.delete_all_unused_submodules()
    return YoloxLogits(module)


def _class_convs(model: YoloxLogits) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 80]


def _backbone_params(model: YoloxLogits) -> list[nn.Parameter]:
    """Parameters of the modules before the first upsample (the CSPDarknet backbone)."""
    params: list[nn.Parameter] = []
    for node in model.levels.graph.nodes:  # type: ignore[union-attr]
        if node.op != "call_module":
            continue
        if str(node.target).startswith("Resize"):
            break
        params += list(model.levels.get_submodule(str(node.target)).parameters())
    return params


# ------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class LabelledImage:
    """One image, its vehicle boxes (xyxy pixels) and the video it was cut from."""

    path: Path
    boxes: Boxes
    video: str


_VIDEO_PREFIX = re.compile(r"^(.+?)_(?:mp4|avi|mov|mkv|ts)-", re.IGNORECASE)
_FRAME_SUFFIX = re.compile(r"^(.+?)[_-]\d+$")


def source_video(path: Path) -> str:
    """The video a frame came from: ``10_mp4-12_jpg.rf.ab.jpg`` (Roboflow) → ``10``,
    ``cam3_000120.jpg`` → ``cam3``; otherwise the whole stem (its own video)."""
    stem = path.name.split(".rf.")[0].rsplit(".", 1)[0]
    for pattern in (_VIDEO_PREFIX, _FRAME_SUFFIX):
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return stem


def read_yolo_folder(folder: str | Path) -> list[LabelledImage]:
    """Every ``images/*`` with its ``labels/*.txt`` under ``folder`` (or its sub-folders).

    Roboflow exports many frames twice (once mirrored, ``.rf.<hash>``); one is kept."""
    roots = sorted(p.parent for p in Path(folder).rglob("images") if p.is_dir())
    images: list[LabelledImage] = []
    seen: set[str] = set()
    for root in roots:
        for path in sorted((root / "images").iterdir()):
            if path.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
                continue
            key = path.name.split(".rf.")[0]
            if key in seen:
                continue
            seen.add(key)
            frame = cv2.imread(str(path))
            if frame is None:
                logger.warning("%s: not an image, skipped", path)
                continue
            h, w = frame.shape[:2]
            label = root / "labels" / f"{path.stem}.txt"
            rows = [ln.split() for ln in label.read_text().splitlines()] if label.exists() else []
            boxes = [
                [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
                for cx, cy, bw, bh in (map(float, row[1:5]) for row in rows if len(row) >= 5)
            ]
            images.append(
                LabelledImage(path, np.array(boxes, np.float32).reshape(-1, 4), source_video(path))
            )
    return images


def split_by_video(
    images: Sequence[LabelledImage], val_videos: Sequence[str] | None, seed: int = 0
) -> tuple[list[LabelledImage], list[LabelledImage], list[str]]:
    """Training and validation images, split by source video. Without ``val_videos`` a
    quarter of the videos (at least one) are held out, drawn with ``seed``."""
    videos = sorted({i.video for i in images})
    if len(videos) < 2:
        raise ValueError(f"the data holds {len(videos)} source video(s); a split needs two")
    if val_videos:
        unknown = sorted(set(val_videos) - set(videos))
        if unknown:
            raise ValueError(f"validation videos {unknown} are not in the data ({videos})")
        held = sorted(val_videos)
    else:
        held = sorted(random.Random(seed).sample(videos, max(1, len(videos) // 4)))
    if set(held) >= set(videos):
        raise ValueError("every video is a validation video; nothing is left to train on")
    train = [i for i in images if i.video not in held]
    return train, [i for i in images if i.video in held], held


def _place(img: Image, size: int, shrink: float = 1.0) -> tuple[Image, float]:
    """Letterbox as ``models.detection.yolox.letterbox`` (pad 114 right and bottom), HWC."""
    h, w = img.shape[:2]
    r = min(size / h, size / w) * shrink
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    canvas[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, r


def _keep_inside(boxes: Boxes, w: float, h: float, min_share: float = 0.4) -> Boxes:
    """Clip to the image; drop boxes that keep less than ``min_share`` of their area."""
    if not len(boxes):
        return boxes
    area = (boxes[:, 2:] - boxes[:, :2]).clip(0).prod(1)
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
    kept = (clipped[:, 2:] - clipped[:, :2]).clip(0).prod(1) >= min_share * np.maximum(area, 1e-6)
    result: Boxes = clipped[kept]
    return result


def _jpeg(img: Image, quality: int) -> Image:
    encoded = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    decoded: Image = np.asarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR), np.uint8)
    return decoded


def degrade(img: Image, rng: random.Random) -> Image:
    """What a street camera does to a frame: blur, exposure, sensor noise, JPEG, and the
    burned-in timestamp and street-name bands."""
    if rng.random() < 0.6:
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.2)), np.uint8)
    if rng.random() < 0.5:
        img = np.asarray(
            cv2.convertScaleAbs(img, alpha=rng.uniform(0.7, 1.25), beta=rng.uniform(-30, 30)),
            np.uint8,
        )
    if rng.random() < 0.5:
        noise = np.random.default_rng(rng.randrange(1 << 30)).normal(
            0, rng.uniform(2, 8), img.shape
        )
        img = np.asarray(np.clip(img + noise, 0, 255), np.uint8)
    if rng.random() < 0.9:
        img = _jpeg(img, rng.randint(15, 60))
    if rng.random() < 0.4:
        h, w = img.shape[:2]
        font = h / 600 * rng.uniform(0.8, 1.4)
        stamp = (
            f"{rng.randint(1, 28):02d}/06/2019 {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        )
        cv2.putText(img, stamp, (3, int(h * 0.05)), cv2.FONT_HERSHEY_SIMPLEX, font, (255,) * 3, 1)
        cv2.rectangle(img, (0, int(h * 0.9)), (w, h), (0, 0, 0), -1)
        cv2.putText(
            img, "High St J3", (3, int(h * 0.96)), cv2.FONT_HERSHEY_SIMPLEX, font, (255,) * 3, 1
        )
    return img


def cctv_augment(img: Image, boxes: Boxes, size: int, rng: random.Random) -> tuple[Image, Boxes]:
    """A training view: flip, crop (50-100 % a side), a 288-480 px wide frame of aspect
    1.15-1.8 (undoing the stock data's square stretch), ``degrade``, letterbox (30 % of
    the time shrunk to 55-100 %, for smaller vehicles)."""
    boxes = boxes.copy()
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        img = np.ascontiguousarray(img[:, ::-1])
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    if rng.random() < 0.7:
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img[y0 : y0 + ch, x0 : x0 + cw]
        boxes = _keep_inside(boxes - np.array([x0, y0, x0, y0], np.float32), cw, ch)
    frame_w = int(rng.uniform(288, 480))
    frame_h = int(frame_w / rng.uniform(1.15, 1.8))
    scale = np.array([frame_w / img.shape[1], frame_h / img.shape[0]] * 2, np.float32)
    small = np.asarray(cv2.resize(img, (frame_w, frame_h), interpolation=cv2.INTER_AREA), np.uint8)
    img = degrade(small, rng)
    canvas, r = _place(img, size, rng.uniform(0.55, 1.0) if rng.random() < 0.3 else 1.0)
    boxes = boxes * scale * r
    return canvas, boxes[((boxes[:, 2:] - boxes[:, :2]) >= 2).all(1)]


def cctv_view(img: Image, boxes: Boxes, size: int) -> tuple[Image, Boxes]:
    """The validation view (deterministic): a 352x288 frame at JPEG q40, letterboxed."""
    h, w = img.shape[:2]
    small = _jpeg(
        np.asarray(cv2.resize(img, CCTV_FRAME, interpolation=cv2.INTER_AREA), np.uint8), 40
    )
    canvas, r = _place(small, size)
    return canvas, boxes * np.array([CCTV_FRAME[0] / w * r, CCTV_FRAME[1] / h * r] * 2, np.float32)


def _window(img: Image, boxes: Boxes, crop: int, rng: random.Random) -> tuple[Image, Boxes]:
    """A ``crop`` square of the canvas (half the time around a box): object scale stays
    as at full size, at a fraction of the CPU cost."""
    size = img.shape[0]
    if len(boxes) and rng.random() < 0.5:
        box = boxes[rng.randrange(len(boxes))]
        cx = (box[0] + box[2]) / 2 + rng.uniform(-crop / 3, crop / 3)
        cy = (box[1] + box[3]) / 2 + rng.uniform(-crop / 3, crop / 3)
        x0, y0 = (int(np.clip(c - crop / 2, 0, size - crop)) for c in (cx, cy))
    else:
        x0, y0 = rng.randint(0, size - crop), rng.randint(0, size - crop)
    boxes = _keep_inside(boxes - np.array([x0, y0, x0, y0], np.float32), crop, crop)
    boxes = boxes[((boxes[:, 2:] - boxes[:, :2]) >= 2).all(1)]
    return np.ascontiguousarray(img[y0 : y0 + crop, x0 : x0 + crop]), boxes


class RoadBoxes(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images as network tensors (3 x S x S, BGR 0-255) with xyxy boxes in network pixels."""

    def __init__(
        self,
        images: Sequence[LabelledImage],
        size: int,
        train: bool,
        crop: int | None = None,
        seed: int = 0,
    ) -> None:
        self.images = list(images)
        self.size, self.train, self.seed = size, train, seed
        self.crop = crop if crop and crop < size else None
        self.epoch = 0
        self._pixels: dict[int, Image] = {}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i not in self._pixels:
            self._pixels[i] = np.asarray(cv2.imread(str(self.images[i].path)), np.uint8)
        img, boxes = self._pixels[i], self.images[i].boxes
        if self.train:
            rng = random.Random(f"{self.seed}/{self.epoch}/{i}")
            img, boxes = cctv_augment(img, boxes, self.size, rng)
            if self.crop:
                img, boxes = _window(img, boxes, self.crop, rng)
        else:
            img, boxes = cctv_view(img, boxes, self.size)
        tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
        return tensor, torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4)


def collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stack the images; keep each image's boxes apart (their counts differ)."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


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
        frozen = {id(p) for p in _backbone_params(model)}
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
        self._heads = [(c.weight, c.bias) for c in _class_convs(model) if c.bias is not None]
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
        return {k: float(v) for k, v in losses.items()}


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
    data: str | Path,
    settings: DetectorSettings,
    val_videos: Sequence[str] | None = None,
    base: str | Path = SHIPPED_DETECTOR,
    progress: Callable[[int, int, float], None] | None = None,
) -> FineTuned:
    """Fine-tune ``base`` on the YOLO boxes under ``data``; keep the EMA weights of the
    epoch with the best validation F1@0.5 at its count-error threshold."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    images = read_yolo_folder(data)
    if not images:
        raise ValueError(f"{data}: no images/ with labels/ found")
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
