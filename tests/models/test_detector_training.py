"""Detector fine-tuning: a tiny CPU run on synthetic road frames, export, the edge loading it."""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

# Not importorskip: onnx2torch only imports after the module registers its torchvision stand-in.
if importlib.util.find_spec("onnx2torch") is None:
    pytest.skip("onnx2torch (the train extra) is not installed", allow_module_level=True)

from roadsense.cli.models.detector_training import add_detector_training
from roadsense.edge.backends.detector import create_detector
from roadsense.models.detection.card import load_detector_card
from roadsense.models.training.detector.data import (
    RoadBoxes,
    collate,
    read_yolo_folder,
    source_video,
    split_by_video,
)
from roadsense.models.training.detector.network import load_yolox
from roadsense.models.training.detector.train import (
    DetectorSettings,
    Trainer,
)


def _road_frames(root: Path, videos: tuple[str, ...], per_video: int) -> None:
    """Grey road frames with filled rectangles as vehicles, and their YOLO label files."""
    rng = random.Random(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for video in videos:
        for i in range(per_video):
            frame = np.full((120, 160, 3), 90, np.uint8)
            rows = []
            for _ in range(rng.randint(2, 4)):
                w, h = rng.randint(20, 40), rng.randint(14, 28)
                x, y = rng.randint(0, 160 - w), rng.randint(20, 120 - h)
                color = tuple(rng.randint(0, 255) for _ in range(3))
                cv2.rectangle(frame, (x, y), (x + w, y + h), color, -1)
                rows.append(
                    f"0 {(x + w / 2) / 160:.4f} {(y + h / 2) / 120:.4f} {w / 160:.4f} {h / 120:.4f}"
                )
            cv2.imwrite(str(root / "images" / f"{video}_{i:04d}.jpg"), frame)
            (root / "labels" / f"{video}_{i:04d}.txt").write_text("\n".join(rows) + "\n")


def test_source_video_is_the_file_name_prefix() -> None:
    assert source_video(Path("10_mp4-12_jpg.rf.abc.jpg")) == "10"
    assert source_video(Path("test2_mp4-3_jpg.rf.d.jpg")) == "test2"
    assert source_video(Path("cam-a_000120.png")) == "cam-a"
    assert source_video(Path("still.jpg")) == "still"


def test_the_split_never_puts_one_video_on_both_sides(tmp_path: Path) -> None:
    _road_frames(tmp_path, ("north", "south", "east", "west"), 3)
    images = read_yolo_folder(tmp_path)
    assert len(images) == 12
    assert all(len(i.boxes) >= 2 for i in images)
    train, val, held = split_by_video(images, None, seed=1)
    assert len(held) == 1
    assert {i.video for i in train}.isdisjoint({i.video for i in val})
    with pytest.raises(ValueError, match="not in the data"):
        split_by_video(images, ["nowhere"])


def test_the_loss_falls_on_a_repeated_batch(tmp_path: Path) -> None:
    _road_frames(tmp_path, ("north",), 4)
    torch.manual_seed(0)
    settings = DetectorSettings(size=128, crop=None, lr=2e-3, warmup_steps=1, threads=2)
    data = RoadBoxes(read_yolo_folder(tmp_path), 128, train=False)
    images, targets = collate([data[i] for i in range(len(data))])
    trainer = Trainer(load_yolox(), settings, total_steps=1000)
    losses = [trainer.step(images, targets)["loss"] for _ in range(6)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_a_tiny_run_exports_a_detector_the_edge_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _road_frames(tmp_path / "data" / "train", ("north", "south"), 4)
    _road_frames(tmp_path / "more", ("east",), 4)  # a second --data folder
    parser = argparse.ArgumentParser()
    add_detector_training(parser.add_subparsers())
    args = parser.parse_args(
        ["detector", "--data", str(tmp_path / "data"), "--data", str(tmp_path / "more"),
         "--out", str(tmp_path / "out"),
         "--epochs", "1", "--size", "128", "--val-videos", "east", "--version", "9.9.9",
         "--json"]
    )  # fmt: skip
    assert args.handler(args) == 0
    figures = json.loads(capsys.readouterr().out)
    model = Path(figures["model"])
    card = load_detector_card(model)
    assert card.version == "9.9.9"
    assert (card.input.width, card.input.height) == (128, 128)
    assert card.training_data["val_videos"] == ["east"]
    assert card.training_data["train_images"] == 8
    assert card.score_threshold == figures["score_threshold"]
    detector = create_detector("onnxruntime", model)
    frame = np.asarray(cv2.imread(str(tmp_path / "more" / "images" / "east_0000.jpg")))
    found = detector.detect([frame, frame])
    assert len(found) == 2
    assert set(found[0].data["class_name"]) <= {"car", "motorcycle", "bus", "truck"}
    # The export keeps the shipped contract: any batch, any multiple-of-32 size.
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"images": np.zeros((3, 3, 160, 192), np.float32)})
    assert output.shape == (3, 20 * 24 + 10 * 12 + 5 * 6, 85)
