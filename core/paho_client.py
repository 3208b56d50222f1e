"""paho-mqtt 2.x clients configured the RoadSense way, and the MQTT Publisher.

MQTT 5 with a persistent session (``clean_start=False`` and a session expiry),
TLS when configured, reconnect with backoff, TCP_NODELAY set after connect
(paho does not; docs/pitfalls.md #3). Connected means a successful CONNACK,
never just an open socket.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from roadsense.core.mqtt import MqttConfig
from roadsense.core.publisher import (
    AckCallback,
    ConnectCallback,
    LastWill,
    MessageHandler,
    Publisher,
)

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

callback_errors: list[BaseException] = []
"""Exceptions raised inside MQTT callbacks; logged, kept, and checked by the tests."""


def guarded_callback(func: Callable[P, R | None]) -> Callable[P, R | None]:
    """Log and record an exception from a paho callback instead of killing its thread."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        try:
            return func(*args, **kwargs)
        except Exception as err:
            callback_errors.append(err)
            logger.exception("error in MQTT callback %s", func.__qualname__)
            return None

    return wrapper


def create_client(
    config: MqttConfig,
    client_id: str,
    username: str | None = None,
    will: LastWill | None = None,
    manual_ack: bool = False,
) -> mqtt.Client:
    """A paho client with protocol, credentials, TLS, will and backoff from the config."""
    v5 = config.protocol == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=manual_ack,
    )
    password = None
    if config.password_file is not None:
        password = config.password_file.read_text(encoding="utf-8").strip()
    if username is not None:
        client.username_pw_set(username, password)
    if config.tls is not None:
        client.tls_set(
            ca_certs=str(config.tls.ca_file),
            certfile=str(config.tls.cert_file) if config.tls.cert_file else None,
            keyfile=str(config.tls.key_file) if config.tls.key_file else None,
        )
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    client.reconnect_delay_set(
        min_delay=max(1, round(config.reconnect_min_s)),
        max_delay=max(1, round(config.reconnect_max_s)),
    )
    return client


def connect_async(client: mqtt.Client, config: MqttConfig) -> None:
    """Start connecting in the background (the loop thread reconnects on its own)."""
    if config.protocol == "5":
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = config.session_expiry_s
        client.connect_async(
            config.host,
            config.port,
            keepalive=config.keepalive_s,
            clean_start=False,
            properties=properties,
        )
    else:
        client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
    client.loop_start()


def set_nodelay(client: mqtt.Client) -> None:
    """Disable Nagle on the client's socket (paho leaves it on)."""
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttPublisher(Publisher):
    """Publisher over a paho client; acknowledgements come from PUBACKs."""

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        username: str | None = None,
        will: LastWill | None = None,
        max_inflight: int = 200,
    ) -> None:
        self._config = config
        self._client = create_client(config, client_id, username, will)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.on_connect = guarded_callback(self._on_connect)
        self._client.on_disconnect = guarded_callback(self._on_disconnect)
        self._client.on_publish = guarded_callback(self._on_publish)
        self._connected = threading.Event()
        self._lock = threading.Lock()
        # mid → (on_ack, on_fail); mids whose PUBACK came before publish() returned.
        self._pending: dict[int, tuple[AckCallback | None, AckCallback | None]] = {}
        self._early: dict[int, bool] = {}
        self._subscriptions: dict[str, MessageHandler] = {}
        self._client.on_message = guarded_callback(self._on_message)
        self._on_connect_callback: ConnectCallback | None = None
        self._client_id = client_id
        self._stopping = False

    def set_on_connect(self, callback: ConnectCallback) -> None:
        self._on_connect_callback = callback

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> None:
        self._subscriptions[topic_filter] = handler
        self._client.message_callback_add(
            topic_filter, guarded_callback(lambda c, u, m: handler(m.topic, bytes(m.payload)))
        )
        if self.is_connected():
            self._client.subscribe(topic_filter, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        logger.warning("%s: unexpected message on %s", self._client_id, message.topic)

    def start(self) -> None:
        connect_async(self._client, self._config)

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        if final is not None and self.is_connected():
            info = self._client.publish(final[0], final[1], qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=5.0)
            except (RuntimeError, ValueError):
                logger.warning("%s: final message not confirmed before disconnect", self._client_id)
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def is_connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected or the timeout passes."""
        return self._connected.wait(timeout_s)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        on_ack: AckCallback | None = None,
        on_fail: AckCallback | None = None,
    ) -> bool:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        # NO_CONN: paho keeps a QoS 1 message and sends it after reconnecting.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            logger.warning("publish to %s not accepted: %s", topic, mqtt.error_string(info.rc))
            return False
        if qos == 0:
            return True
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = (on_ack, on_fail)
        callback = on_ack if early else on_fail if early is False else None
        if callback:
            callback()
        return True

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.warning("%s: broker refused the connection: %s", self._client_id, reason_code)
            self._connected.clear()
            return
        set_nodelay(client)
        for topic_filter in self._subscriptions:
            client.subscribe(topic_filter, qos=1)
        self._connected.set()
        logger.info(
            "%s: connected to %s:%d (session present: %s)",
            self._client_id,
            self._config.host,
            self._config.port,
            flags.session_present,
        )
        if self._on_connect_callback:
            self._on_connect_callback()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connected.is_set() and not self._stopping:
            logger.warning("%s: disconnected: %s", self._client_id, reason_code)
        self._connected.clear()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Runs under paho's out-message lock: never call into paho from here.
        delivered = not reason_code.is_failure
        if not delivered:
            logger.warning("%s: broker refused message %d: %s", self._client_id, mid, reason_code)
        with self._lock:
            callbacks = self._pending.pop(mid, None)
            if callbacks is None:
                self._early[mid] = delivered
                return
        callback = callbacks[0] if delivered else callbacks[1]
        if callback:
            callback()
