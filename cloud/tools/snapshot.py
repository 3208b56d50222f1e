"""Ask a device for a still of one camera (``roadsense cloud snapshot``).

Uses the cloud's broker account (its ``[mqtt]`` section): subscribe to the camera's
snapshot topic and the device's reply, publish the command, wait for both. The session is
not kept (expiry 0), so no one-off client leaves subscriptions behind on the broker.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from google.protobuf.message import DecodeError

from roadsense.core.errors import CommandError
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import connect_async, create_client, guarded_callback
from roadsense.core.roi import Roi, roi_box
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.topics import command_topic, reply_topic, snapshot_topic
from roadsense.proto.v1 import telemetry_pb2


class _Exchange:
    """One request's subscriptions and answers, filled in by the paho callbacks."""

    def __init__(self, device_id: str, camera_id: str) -> None:
        self.request_id = uuid.uuid4().hex[:12]
        self.reply_topic = reply_topic(device_id, "snapshot")
        self.topics = sorted({snapshot_topic(device_id, camera_id), self.reply_topic})
        self.subscribed = threading.Event()
        self.answered = threading.Event()
        self.failure = ""
        self.reply: telemetry_pb2.CommandReply | None = None
        self.snapshot: telemetry_pb2.Snapshot | None = None

    def on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, *_: Any
    ) -> None:
        if reason.is_failure:
            self.failure = f"the broker refused the connection: {reason}"
            self.subscribed.set()
            return
        client.subscribe([(topic, 1) for topic in self.topics])

    def on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, *_: Any
    ) -> None:
        refused = [str(code) for code in reasons if code.is_failure]
        if refused:
            self.failure = f"the broker refused the subscriptions: {', '.join(refused)}"
        self.subscribed.set()

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == self.reply_topic:
                reply = telemetry_pb2.CommandReply.FromString(bytes(message.payload))
                if reply.request_id == self.request_id:
                    self.reply = reply
            else:
                still = telemetry_pb2.Snapshot.FromString(bytes(message.payload))
                if still.request_id == self.request_id:
                    self.snapshot = still
        except DecodeError:
            return  # not an answer to this request (someone else's junk on the topic)
        if self.reply is not None and (not self.reply.ok or self.snapshot is not None):
            self.answered.set()


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


def request_snapshot(
    mqtt_config: MqttConfig,
    device_id: str,
    camera_id: str,
    *,
    username: str | None = None,
    max_width: int | None = None,
    timeout_s: float = 15.0,
) -> telemetry_pb2.Snapshot:
    """The device's snapshot of ``camera_id``; CommandError when refused or not answered."""
    exchange = _Exchange(device_id, camera_id)
    broker = f"{mqtt_config.host}:{mqtt_config.port}"
    one_off = mqtt_config.model_copy(update={"session_expiry_s": 0})
    client = create_client(one_off, f"roadsense-snapshot-{exchange.request_id}", username)
    client.on_connect = guarded_callback(exchange.on_connect)
    client.on_subscribe = guarded_callback(exchange.on_subscribe)
    client.on_message = guarded_callback(exchange.on_message)
    connect_async(client, one_off)
    client.loop_start()
    try:
        if not exchange.subscribed.wait(timeout_s):
            raise CommandError(f"{broker}: could not subscribe within {timeout_s:g} s")
        if exchange.failure:
            raise CommandError(f"{broker}: {exchange.failure}")
        command = telemetry_pb2.SnapshotCommand(
            schema_version=SCHEMA_VERSION, request_id=exchange.request_id, camera_id=camera_id
        )
        if max_width is not None:
            command.max_width = max_width
        client.publish(command_topic(device_id, "snapshot"), command.SerializeToString(), qos=1)
        if not exchange.answered.wait(timeout_s):
            raise CommandError(
                f"device {device_id!r} did not answer within {timeout_s:g} s (offline, or "
                "no such device)"
            )
    finally:
        client.disconnect()
        client.loop_stop()
    if exchange.reply is None or not exchange.reply.ok:
        error = exchange.reply.error if exchange.reply is not None else "no reply"
        raise CommandError(f"device {device_id!r} refused: {error}")
    assert exchange.snapshot is not None  # answered only once both arrived
    return exchange.snapshot


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
    zone: list[float] = []
    if still.HasField("roi"):
        x, y, w, h = still.roi.x, still.roi.y, still.roi.width, still.roi.height
        zone = [x, y, x + w, y, x + w, y + h, x, y + h]
    result = measurer.measure(still.jpeg, zone, explain=True)
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
