"""``roadsense cloud snapshot``: the tool's broker account, and the still written as
received, with its region of interest, explained by the classifier or measured by the
detector. The exchange with the device is ``roadsense.cloud.fleet.snapshots``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from roadsense.cloud.fleet.snapshots import roi_zone
from roadsense.core.errors import CommandError
from roadsense.core.mqtt import MqttConfig
from roadsense.core.roi import Roi, roi_box
from roadsense.proto.v1 import telemetry_pb2


def tool_account(
    mqtt_config: MqttConfig, cert_file: Path | None, key_file: Path | None
) -> MqttConfig:
    """The broker settings a cloud tool connects with: its own certificate, never the ingest's.

    A fleet broker makes a client's certificate CN its client id, so a tool on the
    ingest's certificate would displace the ingest and end its persistent session.
    """
    if (cert_file is None) != (key_file is None):
        raise CommandError("give both --cert-file and --key-file, or neither")
    tls = mqtt_config.tls
    if cert_file is None or key_file is None:
        if tls is not None and tls.cert_file is not None:
            raise CommandError(
                "this tool needs a broker account of its own (--cert-file/--key-file): on a "
                "fleet broker the ingest's certificate would displace the cloud ingest. Make "
                "one with `roadsense provision client-cert roadsense-cloud-tools` and list it "
                "in `provision broker-config --cloud-account roadsense-cloud-tools`"
            )
        return mqtt_config
    if tls is None:
        raise CommandError("--cert-file needs TLS towards the broker ([mqtt.tls] in --config)")
    own = tls.model_copy(update={"cert_file": cert_file, "key_file": key_file})
    return mqtt_config.model_copy(update={"tls": own})


ROI_COLOUR = (0, 255, 255)  # BGR yellow


def write_snapshot(
    still: telemetry_pb2.Snapshot, out: Path, *, draw_roi: bool = False
) -> Roi | None:
    """Write the JPEG as received, or with the region of interest outlined; the ROI."""
    roi: Roi | None = None
    if still.HasField("roi"):
        roi = (still.roi.x, still.roi.y, still.roi.width, still.roi.height)
    if not draw_roi or roi is None:
        out.write_bytes(still.jpeg)
        return roi
    try:
        import cv2
    except ImportError as err:
        raise CommandError("--draw-roi needs OpenCV (pip install 'roadsense[edge]')") from err
    image = cv2.imdecode(np.frombuffer(still.jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise CommandError("the device sent an image that cannot be decoded")
    height, width = image.shape[:2]
    left, top, right, bottom = roi_box(width, height, roi)
    cv2.rectangle(image, (left, top), (right - 1, bottom - 1), ROI_COLOUR, 2)
    if not cv2.imwrite(str(out), image):
        raise CommandError(f"{out}: cannot write the image (unknown suffix?)")
    return roi


def write_explained(still: telemetry_pb2.Snapshot, out: Path, model: Path) -> dict[str, Any]:
    """Classify the still's region of interest with ``model``; write it with the heat map.

    The device classified the same region; the map shows where the model looked.
    """
    from roadsense.cloud.api.classify import ImageClassifier  # ONNX Runtime, OpenCV: on demand

    classifier = ImageClassifier(model, max_image_bytes=len(still.jpeg) + 1, max_pixels=1 << 26)
    roi: Roi | None = None
    if still.HasField("roi"):
        roi = (still.roi.x, still.roi.y, still.roi.width, still.roi.height)
    result, picture = classifier.explain_frame(classifier.decode(still.jpeg), roi)
    import cv2

    if not cv2.imwrite(str(out), picture):
        raise CommandError(f"{out}: cannot write the image (unknown suffix?)")
    return {
        "level": result.level,
        "confidence": round(result.confidence, 4),
        "model_version": result.model_version,
    }


def write_measured(still: telemetry_pb2.Snapshot, out: Path, detector: Path) -> dict[str, Any]:
    """Measure the still with ``detector`` in the camera's region of interest; write it with
    the evidence drawn (every vehicle boxed, the region outlined, the figures written)."""
    from roadsense.cloud.api.measure import ImageMeasurer  # ONNX Runtime, OpenCV: on demand

    measurer = ImageMeasurer(detector, max_image_bytes=len(still.jpeg) + 1, max_pixels=1 << 26)
    result = measurer.measure(still.jpeg, roi_zone(still), explain=True)
    import cv2
    import numpy as np

    picture = cv2.imdecode(np.frombuffer(result.evidence_png, np.uint8), cv2.IMREAD_COLOR)
    if picture is None or not cv2.imwrite(str(out), picture):
        raise CommandError(f"{out}: cannot write the image (unknown suffix?)")
    return {
        "vehicles": len(result.classes),
        "occupancy": result.occupancy,
        "detector_version": result.detector_version,
    }
