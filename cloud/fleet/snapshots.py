"""Ask a device for a still of one camera, over the broker: the snapshot command and its
answer. ``roadsense cloud snapshot`` and the dashboard's evidence stills use it.

Subscribe to the camera's snapshot topic and the device's reply, publish the command, wait
for both. The session is not kept (expiry 0), so no one-off client leaves subscriptions
behind on the broker. The device decides: it refuses unless its ``[privacy]`` allows
snapshots, and pixelates its privacy regions before a still leaves it.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from google.protobuf.message import DecodeError

from roadsense.core.errors import CommandError
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import connect_async, create_client, guarded_callback
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


def roi_zone(still: telemetry_pb2.Snapshot) -> list[float]:
    """The still's region of interest as a zone polygon (x, y pairs, fractions of the
    frame), as MeasureImage takes it; empty (the whole frame) without one."""
    if not still.HasField("roi"):
        return []
    x, y, w, h = still.roi.x, still.roi.y, still.roi.width, still.roi.height
    return [x, y, x + w, y, x + w, y + h, x, y + h]
