"""The generated Mosquitto config on a real broker: mTLS, per-device ACL, the CRL."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from roadsense.core.mqtt import MqttConfig, TlsConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.harness.broker import RunningBroker, free_port, run_mosquitto_config
from roadsense.proto.topics import ack_topic, health_topic, status_topic
from roadsense.provisioning.broker import write_broker_config
from roadsense.provisioning.ca import CertificateAuthority
from roadsense.provisioning.manifest import CLOUD_ACCOUNT

from ..support.certs import make_pki
from ..support.helpers import wait_until

pytestmark = pytest.mark.integration

PASSPHRASE = b"correct horse battery staple"


@dataclass
class Fleet:
    """A fleet folder with a CA and a broker running the generated config."""

    folder: Path
    ca: CertificateAuthority
    broker: RunningBroker

    def client_config(self, cn: str, ca_file: Path | None = None) -> MqttConfig:
        """TLS settings of a client holding the certificate of ``cn`` (from ``issue``)."""
        return MqttConfig(
            host="127.0.0.1",
            port=self.broker.port,
            reconnect_max_s=1,
            tls=TlsConfig(
                ca_file=ca_file or self.ca.cert_file,
                cert_file=self.folder / "clients" / f"{cn}.pem",
                key_file=self.folder / "clients" / f"{cn}.key",
            ),
        )

    def issue(self, cn: str) -> None:
        """A client certificate for ``cn`` under ``clients/``."""
        clients = self.folder / "clients"
        self.ca.issue_files(cn, "device", clients / f"{cn}.pem", clients / f"{cn}.key")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    folder = tmp_path / "fleet"
    ca = CertificateAuthority.create(folder, PASSPHRASE)
    servers = folder / "servers"
    ca.issue_files(
        "broker", "server", servers / "broker.pem", servers / "broker.key", hosts=["127.0.0.1"]
    )
    port = free_port()
    # pytest's tmp folders are private to root: the broker keeps root's identity here
    # (tests/fleet/test_readme_fleet.py runs it as 'mosquitto', docs/provisioning.md's way).
    user = "root" if os.geteuid() == 0 else None
    files = write_broker_config(
        folder, folder / "broker", port=port, bind="127.0.0.1", broker_user=user
    )
    broker = run_mosquitto_config(files.config_file, "127.0.0.1", port)
    try:
        yield Fleet(folder, ca, broker)
    finally:
        broker.stop()


def _connects(config: MqttConfig, client_id: str) -> bool:
    client = MqttPublisher(config, client_id=client_id)
    client.start()
    try:
        return client.wait_connected(4.0)
    finally:
        client.stop()


def _publish_until(sender: MqttPublisher, topic: str, seen: Callable[[], bool]) -> bool:
    """Publish until the receiver has it: a subscription goes live a while after CONNACK."""

    def attempt() -> bool:
        sender.publish(topic, b"x")
        return wait_until(seen, 1.0)

    return wait_until(attempt, 20.0)


def test_a_device_publishes_only_under_its_own_id(fleet: Fleet) -> None:
    fleet.issue("dev-a")
    fleet.issue(CLOUD_ACCOUNT)
    cloud = MqttPublisher(fleet.client_config(CLOUD_ACCOUNT), client_id="cloud")
    received: list[str] = []
    cloud.subscribe("roadsense/v1/#", lambda topic, payload: received.append(topic))
    device = MqttPublisher(fleet.client_config("dev-a"), client_id="dev-a")
    try:
        cloud.start()
        device.start()
        assert cloud.wait_connected(10)
        assert device.wait_connected(10)
        own = health_topic("dev-a")
        assert _publish_until(device, own, lambda: own in received)
        outcome: list[str] = []
        for name, topic in (("own", status_topic("dev-a")), ("other", status_topic("dev-b"))):
            device.publish(
                topic,
                b"x",
                on_ack=lambda n=name: outcome.append(f"{n} ok"),  # type: ignore[misc]
                on_fail=lambda n=name: outcome.append(f"{n} refused"),  # type: ignore[misc]
            )
        assert wait_until(lambda: len(outcome) == 2)
        # Mosquitto answers the foreign topic with PUBACK 'not authorized' (MQTT 5).
        assert sorted(outcome) == ["other refused", "own ok"]
        assert wait_until(lambda: status_topic("dev-a") in received)
        assert status_topic("dev-b") not in received
    finally:
        device.stop()
        cloud.stop()


def test_a_device_reads_only_its_own_commands(fleet: Fleet) -> None:
    for cn in ("dev-a", "dev-b", CLOUD_ACCOUNT):
        fleet.issue(cn)
    got: dict[str, list[str]] = {"dev-a": [], "dev-b": []}
    devices = {}
    for cn in got:
        devices[cn] = MqttPublisher(fleet.client_config(cn), client_id=cn)
        # dev-a also tries to listen to dev-b's commands.
        for target in {cn, "dev-b"}:
            devices[cn].subscribe(
                f"roadsense/v1/{target}/cmd/#",
                lambda topic, payload, c=cn: got[c].append(topic),  # type: ignore[misc]
            )
    cloud = MqttPublisher(fleet.client_config(CLOUD_ACCOUNT), client_id="cloud")
    try:
        for client in (*devices.values(), cloud):
            client.start()
            assert client.wait_connected(10)
        acked: list[str] = []
        cloud.publish("roadsense/v1/dev-b/cmd/snapshot", b"{}", on_ack=lambda: acked.append("ok"))
        assert wait_until(lambda: acked == ["ok"])
        snapshot = "roadsense/v1/dev-b/cmd/snapshot"
        assert _publish_until(cloud, snapshot, lambda: snapshot in got["dev-b"])
        # A device may not send commands either.
        refused: list[str] = []
        devices["dev-a"].publish(
            "roadsense/v1/dev-b/cmd/reboot", b"{}", on_fail=lambda: refused.append("no")
        )
        assert wait_until(lambda: refused == ["no"])
        assert got["dev-a"] == []
        assert set(got["dev-b"]) == {snapshot}
    finally:
        for client in (*devices.values(), cloud):
            client.stop()


def test_only_clients_with_a_valid_fleet_certificate_connect(fleet: Fleet, tmp_path: Path) -> None:
    fleet.issue("dev-ok")
    assert _connects(fleet.client_config("dev-ok"), "dev-ok")  # the control
    plain = MqttConfig(
        host="127.0.0.1",
        port=fleet.broker.port,
        reconnect_max_s=1,
        tls=TlsConfig(ca_file=fleet.ca.cert_file),
    )
    assert not _connects(plain, "no-cert")
    other = make_pki(tmp_path / "other-ca", ["dev-ok"])
    forged = MqttConfig(
        host="127.0.0.1",
        port=fleet.broker.port,
        reconnect_max_s=1,
        tls=TlsConfig(
            ca_file=fleet.ca.cert_file,
            cert_file=other / "dev-ok.pem",
            key_file=other / "dev-ok.key",
        ),
    )
    assert not _connects(forged, "dev-ok")


def test_a_revoked_device_cannot_connect_once_the_broker_reloads_the_crl(fleet: Fleet) -> None:
    fleet.issue("dev-gone")
    fleet.issue("dev-stays")
    assert _connects(fleet.client_config("dev-gone"), "dev-gone")
    revoked = fleet.ca.revoke("dev-gone", reason="stolen")
    assert len(revoked) == 1
    fleet.broker.reload()  # SIGHUP, as `systemctl reload mosquitto` sends
    time.sleep(0.5)  # the signal is handled asynchronously; a restart is tested elsewhere
    assert not _connects(fleet.client_config("dev-gone"), "dev-gone")
    assert _connects(fleet.client_config("dev-stays"), "dev-stays")


def test_keys_are_never_world_readable(fleet: Fleet) -> None:
    fleet.issue("dev-k")
    keys = [
        fleet.folder / "ca" / "ca.key",
        fleet.folder / "servers" / "broker.key",
        fleet.folder / "clients" / "dev-k.key",
    ]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert b"ENCRYPTED" in keys[0].read_bytes()
    assert b"ENCRYPTED" not in keys[2].read_bytes()


def _attacker(fleet: Fleet, cn: str, client_id: str) -> mqtt.Client:
    """A client with ``cn``'s valid certificate asking for ``client_id``, clean start."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    certs = fleet.folder / "clients"
    client.tls_set(str(fleet.ca.cert_file), str(certs / f"{cn}.pem"), str(certs / f"{cn}.key"))
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    client.connect("127.0.0.1", fleet.broker.port, clean_start=True)
    client.loop_start()
    assert connected.wait(10), f"{cn} could not connect"
    return client


def test_a_device_asking_for_another_devices_client_id_displaces_nobody(fleet: Fleet) -> None:
    for cn in ("dev-a", "dev-b"):
        fleet.issue(cn)
    victim = MqttPublisher(fleet.client_config("dev-a"), client_id="dev-a")
    victim.start()
    try:
        assert victim.wait_connected(10)
        attacker = _attacker(fleet, "dev-b", client_id="dev-a")
        try:
            assert not wait_until(lambda: not victim.is_connected(), 2.0)
            acked: list[str] = []
            victim.publish(health_topic("dev-a"), b"x", on_ack=lambda: acked.append("ok"))
            assert wait_until(lambda: acked == ["ok"])
        finally:
            attacker.loop_stop()
            attacker.disconnect()
    finally:
        victim.stop()


def test_no_certificate_can_wipe_the_cloud_session_or_its_queued_reports(fleet: Fleet) -> None:
    for cn in ("dev-a", CLOUD_ACCOUNT):
        fleet.issue(cn)
    received: list[bytes] = []

    def cloud_client() -> MqttPublisher:
        cloud = MqttPublisher(fleet.client_config(CLOUD_ACCOUNT), client_id="roadsense-cloud-1")
        cloud.subscribe("roadsense/v1/+/health", lambda topic, payload: received.append(payload))
        cloud.start()
        assert cloud.wait_connected(10)
        return cloud

    device = MqttPublisher(fleet.client_config("dev-a"), client_id="dev-a")
    device.start()
    try:
        assert device.wait_connected(10)
        cloud = cloud_client()
        assert _publish_until(device, health_topic("dev-a"), lambda: bool(received))
        cloud.stop()  # offline: the broker queues for its persistent session
        received.clear()
        acked: list[int] = []
        for n in range(5):
            device.publish(health_topic("dev-a"), bytes([n]), on_ack=lambda: acked.append(1))
        assert wait_until(lambda: len(acked) == 5)
        # A device takes the cloud's client id (configured or broker-assigned), clean start.
        for client_id in ("roadsense-cloud-1", CLOUD_ACCOUNT):
            attacker = _attacker(fleet, "dev-a", client_id=client_id)
            attacker.loop_stop()
            attacker.disconnect()
        cloud = cloud_client()
        try:
            assert wait_until(lambda: len(received) >= 5, 10.0)
            assert received == [bytes([n]) for n in range(5)]
        finally:
            cloud.stop()
    finally:
        device.stop()


def test_only_the_cloud_writes_a_devices_delivery_confirmations(fleet: Fleet) -> None:
    for cn in ("dev-a", "dev-b", CLOUD_ACCOUNT):
        fleet.issue(cn)
    got: dict[str, list[str]] = {"dev-a": [], "dev-b": []}
    clients = {cn: MqttPublisher(fleet.client_config(cn), client_id=cn) for cn in got}
    clients["dev-a"].subscribe(ack_topic("dev-a"), lambda t, p: got["dev-a"].append(t))
    clients["dev-b"].subscribe(ack_topic("dev-a"), lambda t, p: got["dev-b"].append(t))
    cloud = MqttPublisher(fleet.client_config(CLOUD_ACCOUNT), client_id=CLOUD_ACCOUNT)
    try:
        for client in (*clients.values(), cloud):
            client.start()
            assert client.wait_connected(10)
        assert _publish_until(cloud, ack_topic("dev-a"), lambda: bool(got["dev-a"]))
        refused: list[str] = []
        for cn, client in clients.items():  # a device may not confirm its own reports
            client.publish(ack_topic("dev-a"), b"x", on_fail=lambda c=cn: refused.append(c))  # type: ignore[misc]
        assert wait_until(lambda: sorted(refused) == ["dev-a", "dev-b"])
        assert got["dev-b"] == []
    finally:
        for client in (*clients.values(), cloud):
            client.stop()
