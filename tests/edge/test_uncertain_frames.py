"""The edge's uncertain-frame floor: a frame the calibrated model is unsure of enters the
report as no level (uniform), is counted, and lowers the report's confidence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from roadsense.core.publisher import MemoryPublisher
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.backends.classifier import Classifier, Probabilities
from roadsense.edge.config import ClassifierConfig, ReportConfig
from roadsense.edge.outbox import Outbox
from roadsense.edge.smoothing import discount_uncertain
from roadsense.models.card import load_card
from roadsense.models.preprocess import Frame
from roadsense.models.shipped import PLACEHOLDER_CNN
from roadsense.proto.v1 import telemetry_pb2

from ..support.helpers import wait_until
from .test_agent import _config

UNSURE = np.asarray([0.3, 0.25, 0.2, 0.15, 0.1], np.float32)
SURE = np.asarray([0.05, 0.05, 0.1, 0.7, 0.1], np.float32)


def test_a_row_below_the_floor_becomes_uniform() -> None:
    row, uncertain = discount_uncertain(UNSURE, 0.4)
    assert uncertain
    np.testing.assert_allclose(row, 0.2)
    row, uncertain = discount_uncertain(SURE, 0.4)
    assert not uncertain
    np.testing.assert_array_equal(row, SURE)
    assert discount_uncertain(UNSURE, 0.0) == (UNSURE, False)


class UnsureClassifier(Classifier):
    """Unsure of every frame (leaning to 'free'), or of every other one when ``mixed``."""

    key = "unsure"

    def __init__(self, mixed: bool) -> None:
        super().__init__(PLACEHOLDER_CNN, load_card(PLACEHOLDER_CNN))
        self.calls = 0
        self.mixed = mixed

    def classify(self, frames: Sequence[Frame]) -> Probabilities:
        rows = []
        for _ in frames:
            self.calls += 1
            rows.append(SURE if self.mixed and self.calls % 2 == 0 else UNSURE)
        return np.stack(rows)


def _reports(tmp_path: Path, floor: float, mixed: bool) -> tuple[list[list[float]], int]:
    base = _config(tmp_path)
    config = base.model_copy(
        update={
            "cameras": base.cameras[:1],  # one camera: the sure/unsure rhythm is its own
            "classifier": ClassifierConfig(uncertain_below=floor),
            "reports": ReportConfig(window=4, interval_s=0.3),
        }
    )
    publisher = MemoryPublisher()
    agent = EdgeAgent(config, UnsureClassifier(mixed), publisher, Outbox(config.outbox))
    agent.start()
    try:
        assert wait_until(lambda: agent.stats.reports_created >= 4, 10.0)
        agent.stop_capture()
        health = agent.health()
    finally:
        agent.stop()
    assert health.frames_uncertain == agent.stats.uncertain_frames  # health carries the count
    rows = [
        list(telemetry_pb2.CongestionReport.FromString(m.payload).probabilities)
        for m in publisher.messages
        if m.topic.endswith("/congestion")
    ]
    return rows, agent.stats.uncertain_frames


def test_unsure_frames_are_reported_as_no_level_not_as_a_confident_wrong_one(
    tmp_path: Path,
) -> None:
    with_floor, uncertain = _reports(tmp_path / "floor", 0.4, mixed=False)
    without, none = _reports(tmp_path / "off", 0.0, mixed=False)
    assert uncertain >= 4
    assert none == 0
    # Every frame unsure: the report is uniform, the least weight the cloud's fusion gives
    # (its weight is the top probability) ...
    np.testing.assert_allclose(with_floor[-1], 0.2, atol=1e-6)
    # ... where without the floor it says 'free' at 0.3.
    assert int(np.argmax(without[-1])) == 0
    assert max(without[-1]) > 0.29


def test_with_some_sure_frames_the_level_is_theirs(tmp_path: Path) -> None:
    rows, uncertain = _reports(tmp_path, 0.4, mixed=True)
    assert uncertain > 0
    assert all(int(np.argmax(row)) == 3 for row in rows[1:])
