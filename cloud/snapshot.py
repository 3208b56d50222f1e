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

from roadsense.core.errors import CommandError
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import connect_async, create_client
from roadsense.core.roi import Roi, roi_box
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.topics import command_topic, reply_topic, snapshot_topic
from roadsense.proto.v1 import telemetry_pb2


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
    request_id = uuid.uuid4().hex[:12]
    wanted = {snapshot_topic(device_id, camera_id), reply_topic(device_id, "snapshot")}
    subscribed = threading.Event()
    answered = threading.Event()
    found: dict[str, Any] = {}

    def on_connect(client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(topic, 1) for topic in sorted(wanted)])

    def on_subscribe(*_: Any) -> None:
        subscribed.set()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == reply_topic(device_id, "snapshot"):
            reply = telemetry_pb2.CommandReply.FromString(bytes(message.payload))
            if reply.request_id == request_id:
                found["reply"] = reply
        elif message.topic in wanted:
            still = telemetry_pb2.Snapshot.FromString(bytes(message.payload))
            if still.request_id == request_id:
                found["snapshot"] = still
        answer = found.get("reply")
        if answer is not None and (not answer.ok or "snapshot" in found):
            answered.set()

    one_off = mqtt_config.model_copy(update={"session_expiry_s": 0})
    client = create_client(one_off, f"roadsense-snapshot-{request_id}", username)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    connect_async(client, one_off)
    client.loop_start()
    try:
        if not subscribed.wait(timeout_s):
            raise CommandError(
                f"could not subscribe at the broker {mqtt_config.host}:{mqtt_config.port} "
                f"within {timeout_s:g} s"
            )
        command = telemetry_pb2.SnapshotCommand(
            schema_version=SCHEMA_VERSION, request_id=request_id, camera_id=camera_id
        )
        if max_width is not None:
            command.max_width = max_width
        client.publish(command_topic(device_id, "snapshot"), command.SerializeToString(), qos=1)
        if not answered.wait(timeout_s):
            raise CommandError(
                f"device {device_id!r} did not answer within {timeout_s:g} s (offline, or "
                "no such device)"
            )
    finally:
        client.disconnect()
        client.loop_stop()
    reply = found["reply"]
    if not reply.ok:
        raise CommandError(f"device {device_id!r} refused: {reply.error}")
    snapshot: telemetry_pb2.Snapshot = found["snapshot"]
    return snapshot


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
