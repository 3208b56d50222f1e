"""Publishing to MQTT behind an interface the domain code can fake.

Domain code never imports paho: it talks to a ``Publisher``. ``MqttPublisher``
is the paho-mqtt 2.x implementation; ``MemoryPublisher`` serves unit tests.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

AckCallback = Callable[[], None]
ConnectCallback = Callable[[], None]
MessageHandler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class LastWill:
    """Message the broker publishes when the client vanishes."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class Publisher(abc.ABC):
    """Sends messages to the broker and reports their acknowledgement."""

    @abc.abstractmethod
    def start(self) -> None:
        """Connect in the background; reconnects on its own."""

    @abc.abstractmethod
    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        """Publish ``final`` (topic, payload; retained) if connected, then disconnect."""

    @abc.abstractmethod
    def is_connected(self) -> bool:
        """True only after a successful CONNACK and until the link drops."""

    @abc.abstractmethod
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
        """Hand a message to the client; False when it was not accepted.

        ``on_ack`` runs once the broker acknowledged a QoS 1 message (PUBACK),
        ``on_fail`` when the broker refused it (a failure reason code); both on
        the client's network thread.
        """

    @abc.abstractmethod
    def set_on_connect(self, callback: ConnectCallback) -> None:
        """Run ``callback`` after every successful (re)connection."""

    @abc.abstractmethod
    def subscribe(self, topic_filter: str, handler: MessageHandler) -> None:
        """Deliver messages matching ``topic_filter`` to ``handler(topic, payload)``.

        The subscription is renewed on every reconnection.
        """


@dataclass
class PublishedMessage:
    """A message a MemoryPublisher received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    on_ack: AckCallback | None = field(default=None, repr=False)
    on_fail: AckCallback | None = field(default=None, repr=False)


class MemoryPublisher(Publisher):
    """In-memory publisher for unit tests; acknowledges at once unless told not to."""

    def __init__(self, auto_ack: bool = True) -> None:
        self.messages: list[PublishedMessage] = []
        self.auto_ack = auto_ack
        self.connected = False
        self.subscriptions: dict[str, MessageHandler] = {}
        self._on_connect: ConnectCallback | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.connected = True
        if self._on_connect:
            self._on_connect()

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        if final and self.connected:
            self.publish(final[0], final[1], retain=True)
        self.connected = False

    def is_connected(self) -> bool:
        return self.connected

    def set_on_connect(self, callback: ConnectCallback) -> None:
        self._on_connect = callback

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> None:
        self.subscriptions[topic_filter] = handler

    def deliver(self, topic: str, payload: bytes) -> None:
        """Simulate an incoming message on a subscribed topic (exact filter match)."""
        for topic_filter, handler in self.subscriptions.items():
            if topic_filter == topic or (
                topic_filter.endswith("/#") and topic.startswith(topic_filter[:-1])
            ):
                handler(topic, payload)

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
        if not self.connected:
            return False
        with self._lock:
            self.messages.append(PublishedMessage(topic, payload, qos, retain, on_ack, on_fail))
        if self.auto_ack and on_ack:
            on_ack()
        return True

    def refuse(self, index: int) -> None:
        """The broker refuses message ``index`` (a failure reason code)."""
        with self._lock:
            message = self.messages[index]
            callback, message.on_ack, message.on_fail = message.on_fail, None, None
        if callback:
            callback()

    def ack_all(self) -> None:
        """Acknowledge every message published so far (when auto_ack is off)."""
        with self._lock:
            pending = [m.on_ack for m in self.messages if m.on_ack]
            for message in self.messages:
                message.on_ack = None
                message.on_fail = None
        for callback in pending:
            callback()
