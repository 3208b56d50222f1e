"""Road-camera boxes for fine-tuning the detector: YOLO folders, a split by source video,
and augmentation that makes sharp stock frames look like roadside CCTV.

Frames of one video are near-duplicates, so the split is by *source video* (the file-name
prefix), never by file. Augmentation: crop, resize to a 288-480 px wide frame, blur, noise,
JPEG q15-60, burned-in text, letterbox (``cctv_augment``); validation sees the plain
CCTV-sized view (``cctv_view``).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import torch

from roadsense.models.detection.yolox import PAD_VALUE

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Boxes = npt.NDArray[np.float32]
CCTV_FRAME = (352, 288)


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
