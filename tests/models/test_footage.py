"""Footage to training data: auto-labels, composites and the dataset builder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from roadsense.cli.main import main
from roadsense.core.errors import FootageError
from roadsense.models.card import sha256_file
from roadsense.models.congestion_labels import CONGESTION_LABELS
from roadsense.models.footage.autolabel import autolabel_video, label_counts, level_for
from roadsense.models.footage.composite import (
    Compositor,
    SizeModel,
    VehicleCrop,
    clean_background,
    extract_crops,
    level_for_density,
    plan_placements,
    render,
)
from roadsense.models.footage.config import (
    FootageConfig,
    default_config_path,
    load_footage_config,
)
from roadsense.models.footage.dataset import DatasetSummary, build_dataset
from roadsense.models.footage.video import read_frames, read_frames_at
from tests.conftest import SAMPLE_VIDEO

pytestmark = pytest.mark.integration

W, H = 160, 120
WARMUP = 150  # a long warm-up slows MOG2's learning, as on a real clip


def _synthetic_config() -> FootageConfig:
    return FootageConfig.model_validate(
        {
            "roi": {
                "frame_width": W,
                "frame_height": H,
                "polygon": [[0, 0], [159, 0], [159, 119], [0, 119]],
            },
            "autolabel": {
                "analysis_scale": 1.0,
                "warmup_frames": WARMUP,
                "occupancy_bands": [0.03, 0.10, 0.20, 0.35],
                "slow_motion_px": 0.6,
                "slow_min_occupancy": 0.15,
            },
            "composite": {
                "lanes": [[[80, 10], [80, 110]]],
                "density_bands": [0.08, 0.20, 0.35, 0.55],
                "max_density": 0.85,
            },
        }
    )


def _texture(rng: np.random.Generator, h: int, w: int, base: int) -> np.ndarray:
    noise = rng.integers(-60, 60, (h, w, 3)) + base
    return np.clip(cv2.GaussianBlur(noise.astype(np.uint8), (3, 3), 0), 0, 255).astype(np.uint8)


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30, (W, H))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def _scene(tmp_path: Path, name: str, speed: float, cars: int) -> Path:
    """Empty road for the warm-up, then ``cars`` textured blocks moving down at ``speed``."""
    rng = np.random.default_rng(1)
    road = _texture(rng, H, W, 110)
    blocks = [_texture(rng, 26, 30, 200 if i % 2 else 30) for i in range(cars)]
    frames = []
    for t in range(WARMUP + 20):
        frame = road.copy()
        if t >= WARMUP:
            for i, block in enumerate(blocks):
                x = 5 + (i % 4) * 38
                y = int(4 + (i // 4) * 38 + speed * (t - WARMUP)) % (H - 26)
                frame[y : y + 26, x : x + 30] = block
        noise = rng.integers(-2, 3, frame.shape)
        frames.append(np.clip(frame.astype(int) + noise, 0, 255).astype(np.uint8))
    return _write_video(tmp_path / f"{name}.avi", frames)


def test_empty_road_is_free(tmp_path: Path) -> None:
    labels = autolabel_video(_scene(tmp_path, "empty", 0.0, 0), _synthetic_config())
    assert len(labels) == 20  # warm-up frames are never labelled
    assert {lab.label for lab in labels} == {"free"}
    assert max(lab.occupancy for lab in labels) < 0.03


def test_moving_dense_traffic_is_dense_but_not_a_jam(tmp_path: Path) -> None:
    labels = autolabel_video(_scene(tmp_path, "moving", 3.0, 9), _synthetic_config())[2:]
    assert min(lab.occupancy for lab in labels) > 0.3  # 9 blocks of 780 px in 19,200
    assert all(lab.motion is not None and lab.motion > 1.5 for lab in labels)
    assert {lab.label for lab in labels} <= {"heavy", "moderate"}
    assert "heavy" in {lab.label for lab in labels}


def test_dense_standing_traffic_is_a_jam(tmp_path: Path) -> None:
    # MOG2 absorbs standing vehicles in time; the first 20 frames after arrival count.
    labels = autolabel_video(_scene(tmp_path, "standing", 0.0, 9), _synthetic_config())[2:]
    assert min(lab.occupancy for lab in labels) > 0.3
    assert all(lab.motion is not None and lab.motion < 0.6 for lab in labels)
    assert {lab.label for lab in labels} == {"jammed"}


def test_slow_rule_needs_density() -> None:
    config = _synthetic_config().autolabel
    assert level_for(0.05, 0.1, config) == 1  # sparse and slow: still light
    assert level_for(0.25, 0.1, config) == 4  # heavy and slow: jammed
    assert level_for(0.25, 3.0, config) == 3
    assert level_for(0.50, 3.0, config) == 3  # dense but flowing is not a jam
    assert level_for(0.50, None, config) == 3


def _square_crops() -> list[VehicleCrop]:
    colours = [(0, 0, 255), (255, 0, 0), (0, 255, 255)]
    return [
        VehicleCrop(np.full((20, 20, 3), c, np.uint8), np.ones((20, 20), np.float32), 80, 100, 0)
        for c in colours
    ]


@pytest.mark.parametrize(("density", "expected"), [(0.0, 0), (0.2, 1), (0.4, 2), (0.6, 3)])
def test_composite_holds_the_vehicles_its_density_asks_for(density: float, expected: int) -> None:
    # Constant apparent size 20 px on a 100 px lane: the lane holds 5 vehicle sizes.
    background = np.full((H, W, 3), 90, np.uint8)
    crops = _square_crops()
    placements = plan_placements(
        _synthetic_config().composite.lanes,
        crops,
        SizeModel(20.0, 0.0),
        density,
        np.random.default_rng(3),
    )
    assert len(placements) == expected
    image = render(background, crops, placements)
    changed = (np.abs(image.astype(int) - background).max(axis=2) > 30).astype(np.uint8)
    count, _ = cv2.connectedComponents(changed)
    assert count - 1 == expected  # each pasted vehicle is really in the picture


@pytest.fixture(scope="module")
def clip_config() -> FootageConfig:
    return load_footage_config(default_config_path(SAMPLE_VIDEO))


@pytest.fixture(scope="module")
def compositor(clip_config: FootageConfig) -> Compositor:
    frames = [(i, f) for i, f in enumerate(read_frames(SAMPLE_VIDEO)) if i % 10 == 0 and i < 1200]
    background = clean_background([f for _, f in frames[::2]])
    crops = extract_crops(frames, background, clip_config.roi, clip_config.composite)
    return Compositor(background, crops, clip_config.composite)


def test_nearer_pasted_vehicles_are_larger(compositor: Compositor) -> None:
    assert len(compositor.crops) > 50
    assert compositor.sizes.slope > 0
    scene = compositor.make(4, np.random.default_rng(0))
    rows = [p.y for p in scene.placements]
    assert rows == sorted(rows)  # painted far to near: nearer ones cover farther ones
    assert len(rows) >= 8
    widths = [p.width for p in scene.placements]
    ranks = np.corrcoef(np.argsort(np.argsort(rows)), np.argsort(np.argsort(widths)))[0, 1]
    assert ranks > 0.7
    sizes = [compositor.sizes.size_at(y) for y in rows]
    assert sizes == sorted(sizes)


def test_generated_set_has_the_requested_labels(compositor: Compositor) -> None:
    rng = np.random.default_rng(7)
    wanted = {0: 3, 1: 2, 2: 4, 3: 1, 4: 5}
    made = [compositor.make(level, rng) for level, n in wanted.items() for _ in range(n)]
    got: dict[int, int] = {}
    for scene in made:
        assert level_for_density(scene.density, compositor.config) == scene.level
        got[scene.level] = got.get(scene.level, 0) + 1
    assert got == wanted
    counts = [len(s.placements) for s in made]
    assert counts[-1] > counts[0]  # jammed scenes carry more vehicles than free ones


def test_composites_are_deterministic(compositor: Compositor) -> None:
    a = compositor.make(3, np.random.default_rng(5))
    b = compositor.make(3, np.random.default_rng(5))
    assert a.placements == b.placements
    assert np.array_equal(a.image, b.image)


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, clip_config: FootageConfig
) -> tuple[DatasetSummary, dict[str, Any]]:
    out = tmp_path_factory.mktemp("footage") / "congestion"
    summary = build_dataset(
        SAMPLE_VIDEO, out, clip_config, per_class=12, holdout_fraction=0.2, seed=1
    )
    manifest = json.loads((out / "dataset.json").read_text())
    return summary, manifest


def _files(folder: Path) -> dict[str, list[str]]:
    return {d.name: sorted(f.name for f in d.glob("*.png")) for d in folder.iterdir() if d.is_dir()}


def test_autolabel_distribution_is_what_it_claims(
    built: tuple[DatasetSummary, dict[str, Any]], clip_config: FootageConfig
) -> None:
    _, manifest = built
    labels = autolabel_video(SAMPLE_VIDEO, clip_config, every=clip_config.dataset.sample_every)
    counts = label_counts(labels, CONGESTION_LABELS)
    assert counts == manifest["autolabel"]["label_distribution"]
    assert sum(1 for n in counts.values() if n) > 1
    for lab in labels:
        assert lab.level == level_for(lab.occupancy, lab.motion, clip_config.autolabel)
        assert lab.label == CONGESTION_LABELS[lab.level]


def test_dataset_writes_the_counts_it_claims(
    built: tuple[DatasetSummary, dict[str, Any]],
) -> None:
    summary, manifest = built
    files = _files(summary.out)
    assert set(files) == set(CONGESTION_LABELS)
    for name in CONGESTION_LABELS:
        real = [f for f in files[name] if f.startswith("real_")]
        assert len(files[name]) == manifest["counts"][name] == 12
        assert len(real) == manifest["real"][name]
        assert len(files[name]) - len(real) == manifest["composite"][name] >= 3  # 25 % floor
    assert manifest["video"]["sha256"] == sha256_file(SAMPLE_VIDEO)
    assert manifest["seed"] == 1
    assert manifest["config"]["roi"]["polygon"][0] == [212, 0]
    assert any("not human labels" in c for c in manifest["caveats"])
    assert any("one camera" in c for c in manifest["caveats"])
    image = cv2.imread(str(summary.out / "jammed" / files["jammed"][0]))
    assert image is not None
    assert image.shape == (240, 320, 3)


def test_holdout_is_real_frames_from_the_end_only(
    built: tuple[DatasetSummary, dict[str, Any]],
) -> None:
    summary, manifest = built
    holdout = manifest["holdout"]
    assert holdout["first_frame"] == int(1699 * 0.8)
    assert summary.holdout_out is not None
    files = _files(summary.holdout_out)
    indices = sorted(int(f[6:11]) for names in files.values() for f in names)
    assert all(f.startswith("real_f") for names in files.values() for f in names)
    assert indices == holdout["frame_indices"]
    assert indices
    assert min(indices) >= holdout["first_frame"]
    assert {k: len(v) for k, v in files.items() if v} == {
        k: v for k, v in holdout["counts"].items() if v
    }
    by_index = {lab.index: lab.label for lab in summary.frame_labels}
    for label, names in files.items():
        assert all(by_index[int(f[6:11])] == label for f in names)
    training = [
        int(f[6:11]) for names in _files(summary.out).values() for f in names if "real" in f
    ]
    assert max(training) < holdout["training_frames_before"] <= holdout["first_frame"]


def test_cli_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = default_config_path(SAMPLE_VIDEO).read_text().replace("[251, 239]", "[400, 239]")
    config = tmp_path / "bad.toml"
    config.write_text(text)
    argv = ["dataset", "congestion", "--video", str(SAMPLE_VIDEO), "--out", str(tmp_path / "o")]
    assert main([*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "polygon vertex [400, 239]" in err
    assert main([*argv, "--holdout-fraction", "1.5"]) == 1
    assert "--holdout-fraction" in capsys.readouterr().err
    assert main(["dataset", "congestion", "--video", str(tmp_path / "x.avi"), "--out", "o"]) == 2


def test_frames_are_read_at_their_indices_and_a_missing_one_is_named() -> None:
    every = list(read_frames(SAMPLE_VIDEO))
    picked = read_frames_at(SAMPLE_VIDEO, {0, 7, 120})
    assert sorted(picked) == [0, 7, 120]
    for index, frame in picked.items():
        np.testing.assert_array_equal(frame, every[index])
    with pytest.raises(FootageError, match=rf"frame\(s\) \[{len(every)}\] could not be decoded"):
        read_frames_at(SAMPLE_VIDEO, {3, len(every)})
