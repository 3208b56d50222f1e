"""Build an edge agent from its configuration and run it until told to stop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from roadsense.core.errors import ModelLoadError
from roadsense.core.paho_client import MqttPublisher
from roadsense.core.signals import wait_for_stop_signal
from roadsense.edge.agent import EdgeAgent
from roadsense.edge.backends.classifier import Classifier, create_classifier
from roadsense.edge.backends.detector import Detector, create_detector
from roadsense.edge.config import EdgeConfig
from roadsense.edge.outbox import Outbox
from roadsense.edge.status import last_will
from roadsense.edge.updates.slots import DETECTOR_FOLDER
from roadsense.edge.updates.state import startup_model
from roadsense.models.shipped import DEFAULT_CNN, DEFAULT_DETECTOR

logger = logging.getLogger(__name__)


M = TypeVar("M")


def _in_force(folder: Path, configured: Path, load: Callable[[Path], M]) -> M:
    """The model in force (``folder``'s state.json), else the configured one, loaded."""
    model = startup_model(folder, configured)
    try:
        return load(model)
    except ModelLoadError as err:
        if model == configured:
            raise
        logger.warning("cannot start on %s (%s); starting on the configured model", model, err)
        return load(configured)


def startup_classifier(config: EdgeConfig) -> Classifier:
    """The classifier of the model in force (models/state.json), else the configured one."""
    options = config.classifier.backend_options()
    return _in_force(
        config.models.folder,
        config.classifier.model or DEFAULT_CNN,
        lambda onnx: create_classifier(config.classifier.type, onnx, options),
    )


def startup_detector(config: EdgeConfig) -> Detector | None:
    """The vehicle detector when the device measures (``[measure] enabled``): the one in
    force (models/detector/state.json), else the configured one."""
    if not config.measure.enabled:
        return None
    options: dict[str, object] = {"intra_op_threads": config.measure.intra_op_threads}
    return _in_force(
        config.models.folder / DETECTOR_FOLDER,
        config.measure.model or DEFAULT_DETECTOR,
        lambda onnx: create_detector(config.measure.type, onnx, options),
    )


def build_agent(config: EdgeConfig) -> EdgeAgent:
    """Load the models, open the outbox and set up MQTT for one device."""
    classifier = startup_classifier(config)
    detector = startup_detector(config)
    outbox = Outbox(config.outbox)
    publisher = MqttPublisher(
        config.mqtt,
        client_id=config.device_id,
        username=config.device_id,
        will=last_will(config, classifier.card.version),
        max_inflight=config.outbox.max_inflight,
    )
    return EdgeAgent(config, classifier, publisher, outbox, detector=detector)


def run(config: EdgeConfig) -> None:
    """Run an agent until SIGTERM or SIGINT."""
    agent = build_agent(config)
    agent.start()
    wait_for_stop_signal()
    logger.info("stopping edge agent %s", config.device_id)
    agent.shutdown()
