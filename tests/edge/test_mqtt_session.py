"""The MQTT session: mutual TLS with the device id as identity; no 'connected' on a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from roadsense.core.mqtt import MqttConfig, TlsConfig
from roadsense.core.paho_client import MqttPublisher, connect_async, create_client
from roadsense.harness.broker import start_mosquitto
from roadsense.proto.topics import status_topic
from roadsense.proto.v1 import telemetry_pb2

from ..support.certs import make_pki
from ..support.helpers import wait_until

pytestmark = pytest.mark.integration


def test_mutual_tls_identity_is_the_device_id(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", ["tls-dev-1", "watcher"])
    acl = tmp_path / "acl"
    # A device may write only under its own subtree: the ACL pattern uses the
    # certificate's CN, which becomes the username.
    acl.write_text("pattern write roadsense/v1/%u/#\nuser watcher\ntopic read roadsense/v1/#\n")
    broker = start_mosquitto(
        tmp_path / "broker",
        listener_config=(
            f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\n"
            f"keyfile {pki / 'server.key'}\nrequire_certificate true\n"
            "use_identity_as_username true\n"
        ),
        extra_config=f"acl_file {acl}\n",
    )

    def tls(cn: str) -> MqttConfig:
        return MqttConfig(
            host="127.0.0.1",
            port=broker.port,
            tls=TlsConfig(
                ca_file=pki / "ca.pem", cert_file=pki / f"{cn}.pem", key_file=pki / f"{cn}.key"
            ),
            reconnect_max_s=2,
        )

    received: list[tuple[str, bytes]] = []
    watcher = create_client(tls("watcher"), "watcher")
    watcher.on_connect = lambda c, u, f, r, p: c.subscribe("roadsense/v1/#", qos=1)
    watcher.on_message = lambda c, u, m: received.append((m.topic, bytes(m.payload)))
    connect_async(watcher, tls("watcher"))
    device = MqttPublisher(tls("tls-dev-1"), client_id="tls-dev-1")
    try:
        assert wait_until(watcher.is_connected)
        device.start()
        assert device.wait_connected(10.0)
        outcome: list[str] = []
        own = status_topic("tls-dev-1")
        other = status_topic("tls-dev-2")
        online = telemetry_pb2.DeviceStatus(
            device_id="tls-dev-1", state=telemetry_pb2.DeviceStatus.ONLINE
        ).SerializeToString()
        device.publish(
            own,
            online,
            on_ack=lambda: outcome.append("own ok"),
            on_fail=lambda: outcome.append("own refused"),
        )
        device.publish(
            other,
            online,
            on_ack=lambda: outcome.append("other ok"),
            on_fail=lambda: outcome.append("other refused"),
        )
        assert wait_until(lambda: len(outcome) == 2)
        assert sorted(outcome) == ["other refused", "own ok"]
        assert wait_until(lambda: (own, online) in received)
        assert not any(t == other for t, _ in received)
    finally:
        device.stop()
        watcher.disconnect()
        watcher.loop_stop()
        broker.stop()


def test_refused_connection_is_never_connected(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    passwords.write_text("")  # nobody may log in
    broker = start_mosquitto(
        tmp_path / "broker",
        extra_config=f"allow_anonymous false\npassword_file {passwords}\n",
    )
    device = MqttPublisher(
        MqttConfig(host=broker.host, port=broker.port, reconnect_max_s=1),
        client_id="refused-1",
        username="refused-1",
    )
    try:
        device.start()
        assert not device.wait_connected(3.0)
        assert not device.is_connected()
    finally:
        device.stop()
        broker.stop()
