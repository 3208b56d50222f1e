"""A camera's region of interest: checked where it is configured, cropped before classifying."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from roadsense.core.config import load_config
from roadsense.core.errors import ConfigError
from roadsense.core.roi import check_roi, crop_roi
from roadsense.edge.config import EdgeConfig


@pytest.mark.parametrize(
    "roi",
    [(0.5, 0.2, 0.6, 0.5), (-0.1, 0, 0.5, 0.5), (0, 0, 0, 0.5), (0, 1.0, 0.5, 0.5), (0, 0, 1, 1.2)],
)
def test_regions_outside_the_frame_are_refused(roi: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError, match="must lie inside the frame"):
        check_roi(roi)


def test_crop_takes_the_fractions_of_any_frame_size() -> None:
    frame = np.arange(600 * 800 * 3, dtype=np.uint32).reshape(600, 800, 3).astype(np.uint8)
    crop = crop_roi(frame, (0.25, 0.5, 0.5, 0.5))
    assert crop.shape == (300, 400, 3)
    np.testing.assert_array_equal(crop, frame[300:600, 200:600])
    assert crop_roi(frame, None) is frame
    assert crop_roi(frame, (0.0, 0.0, 1.0, 1.0)).shape == frame.shape
    # A sliver still gives one pixel, never an empty image.
    assert crop_roi(np.zeros((4, 4, 3), np.uint8), (0.9, 0.9, 0.05, 0.05)).shape == (1, 1, 3)


def test_edge_config_names_a_bad_roi(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(
        'device_id = "dev-1"\n[[cameras]]\nid = "cam1"\nsource = "/dev/null"\n'
        'segment_id = "seg-a"\nroi = [0.5, 0.0, 0.7, 1.0]\n'
    )
    with pytest.raises(
        ConfigError,
        match=r"cameras\[0\]\.roi: .*must lie inside the frame.*\(got \[0\.5, 0\.0, 0\.7, 1\.0\]\)",
    ):
        load_config(EdgeConfig, config)
    config.write_text(config.read_text().replace("0.7", "0.5"))
    assert load_config(EdgeConfig, config).cameras[0].roi == (0.5, 0.0, 0.5, 1.0)
