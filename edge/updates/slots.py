"""The models a device updates, as its updaters see them: one ``ModelSlot`` per kind.

A slot says where the kind's releases live, how a release is loaded (with the backend the
device runs), read (its card), self-tested (``edge/updates/selftest.py``) and put in force
(the inference loop takes it between two batches). The classifier's slot keeps its
releases in ``[models] folder``; a measuring device's detector slot in ``detector/``
below it, each with its own ``state.json``, so each kind rolls back on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from roadsense.edge.backends.classifier import Classifier, create_classifier
from roadsense.edge.backends.detector import Detector, create_detector
from roadsense.edge.config import EdgeConfig
from roadsense.edge.updates.selftest import (
    Check,
    Run,
    SelfTestResult,
    check_detections,
    check_probabilities,
    classify,
    detect,
    self_test,
)
from roadsense.models.card import load_card
from roadsense.models.detection.card import load_detector_card
from roadsense.models.preprocess import Frame
from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR
from roadsense.proto.model_kinds import CONGESTION, DETECTOR

DETECTOR_FOLDER = "detector"
"""The detector's releases, below ``[models] folder``."""


class UpdatableModel(Protocol):
    """A model an update replaces: a classifier or a detector."""

    model_path: Path

    @property
    def version(self) -> str:
        """Its card's version."""

    @property
    def max_batch(self) -> int:
        """Frames per call at most."""

    def close(self) -> None:
        """Free its runtime."""


Reply = Callable[[str, bool, str, dict[str, Any]], None]
"""Publishes the CommandReply of a ModelUpdate: (request id, ok, error, settings)."""


@dataclass(frozen=True)
class ModelSlot:
    """One kind of model on the device, as its updater sees it."""

    kind: str
    """``proto/model_kinds.py``: the updates this slot takes."""
    folder: Path
    """Its releases and ``state.json``."""
    configured_onnx: Path
    """The model the configuration names (or the shipped one): held on every device."""
    current: Callable[[], UpdatableModel]
    load: Callable[[Path], UpdatableModel]
    """Loads a release with the device's backend; ModelLoadError when it cannot."""
    card_of: Callable[[Path], tuple[str, str]]
    """(version, onnx sha256) from the card beside an ONNX; ModelLoadError."""
    recent_frames: Callable[[int, float], list[Frame]]
    """Up to ``count`` recent frames as the running model saw them, waiting up to
    ``wait_s`` for that many just after a start."""
    swap: Callable[[Any], float]
    """Puts a candidate in force between two batches; the loop's pause in ms.
    ModelUpdateError('swap') when the loop did not take it."""
    run: Run
    check: Check

    @property
    def running(self) -> UpdatableModel:
        """The model in force."""
        return self.current()

    def test(
        self,
        candidate: UpdatableModel,
        running: UpdatableModel,
        frames: Sequence[Frame],
        *,
        latency_factor: float | None,
        rounds: int,
    ) -> SelfTestResult:
        """The kind's self-test of ``candidate`` beside ``running``."""
        return self_test(
            candidate,
            running,
            frames,
            latency_factor=latency_factor,
            rounds=rounds,
            run=self.run,
            check=self.check,
        )


class ClassifierHost(Protocol):
    """What the classifier's slot needs from the agent."""

    @property
    def classifier(self) -> Classifier:
        """The classifier in force."""

    def recent_frames(self, count: int, wait_s: float) -> list[Frame]:
        """Recent frames as the classifier saw them (cropped to their region)."""

    def swap_classifier(self, candidate: Classifier) -> float:
        """Put ``candidate`` in force between two batches; the pause in ms."""


class DetectorHost(Protocol):
    """What the detector's slot needs from the agent."""

    @property
    def detector(self) -> Detector:
        """The detector in force."""

    def recent_measured_frames(self, count: int, wait_s: float) -> list[Frame]:
        """Recent whole frames the detector measured."""

    def swap_detector(self, candidate: Detector) -> float:
        """Put ``candidate`` in force between two batches; the pause in ms."""


def _card_of(onnx: Path) -> tuple[str, str]:
    card = load_card(onnx)
    return card.version, card.onnx_sha256


def _detector_card_of(onnx: Path) -> tuple[str, str]:
    card = load_detector_card(onnx)
    return card.version, card.onnx_sha256


def classifier_slot(
    config: EdgeConfig, host: ClassifierHost, load: Callable[[Path], Classifier] | None = None
) -> ModelSlot:
    """The congestion classifier's slot; ``load`` defaults to the running backend with the
    configured options."""
    running_key = host.classifier.key
    options = config.classifier.backend_options()
    return ModelSlot(
        kind=CONGESTION,
        folder=config.models.folder,
        configured_onnx=config.classifier.model or DEFAULT_CNN,
        current=lambda: host.classifier,
        load=load or (lambda onnx: create_classifier(running_key, onnx, options)),
        card_of=_card_of,
        recent_frames=host.recent_frames,
        swap=host.swap_classifier,
        run=classify,
        check=check_probabilities,
    )


def detector_slot(
    config: EdgeConfig, host: DetectorHost, load: Callable[[Path], Detector] | None = None
) -> ModelSlot:
    """A measuring device's detector slot; ``load`` defaults to the running backend with
    the configured options."""
    running_key = host.detector.key
    options: dict[str, object] = {"intra_op_threads": config.measure.intra_op_threads}
    return ModelSlot(
        kind=DETECTOR,
        folder=config.models.folder / DETECTOR_FOLDER,
        configured_onnx=config.measure.model or DEFAULT_DETECTOR,
        current=lambda: host.detector,
        load=load or (lambda onnx: create_detector(running_key, onnx, options)),
        card_of=_detector_card_of,
        recent_frames=host.recent_measured_frames,
        swap=host.swap_detector,
        run=detect,
        check=check_detections,
    )
