"""Enrollment by claim and revocation through a real cloud, real gRPC TLS and a real broker.

The broker runs the generated mTLS config; the cloud ingests over mTLS with
its own account; devices enroll with tokens and publish with what they got.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from roadsense.cloud.api.auth import AuthConfig, TokenConfig, hash_token
from roadsense.cloud.app import CloudService
from roadsense.cloud.config import (
    CloudConfig,
    EnrollmentConfig,
    GrpcConfig,
    GrpcTlsConfig,
    IngestConfig,
    StoreConfig,
)
from roadsense.cloud.fleet.enrollment import create_token
from roadsense.core.config import load_config
from roadsense.core.errors import EnrollmentError, ProvisioningError
from roadsense.core.mqtt import MqttConfig, TlsConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.core.timeutil import now_ms
from roadsense.edge.config import EdgeConfig
from roadsense.harness.broker import RunningBroker, free_port, run_mosquitto_config
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.topics import status_topic
from roadsense.proto.v1 import fleet_pb2, fleet_pb2_grpc, telemetry_pb2
from roadsense.provisioning.broker import write_broker_config
from roadsense.provisioning.ca import CertificateAuthority
from roadsense.provisioning.enroll import enroll, make_csr, request_certificate
from roadsense.provisioning.manifest import CLOUD_ACCOUNT
from roadsense.provisioning.model_key import create_model_key

from ..support.helpers import wait_until

pytestmark = pytest.mark.integration

PASSPHRASE = "a long enough test passphrase"
ADMIN, READER = "admin-token-for-tests", "reader-token-for-tests"


@dataclass
class Setup:
    """A fleet CA, a broker with the generated config and a cloud that enrolls."""

    folder: Path
    ca: CertificateAuthority
    broker: RunningBroker
    cloud: CloudService

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.cloud.port}"

    def channel(self) -> grpc.Channel:
        root = self.ca.cert_file.read_bytes()
        return grpc.secure_channel(
            self.grpc_address, grpc.ssl_channel_credentials(root_certificates=root)
        )

    def token(self, device_id: str | None, uses: int = 1, ttl_s: float = 600) -> str:
        return create_token(self.cloud.store, now_ms(), ttl_s, uses, device_id)


MANIFEST = """\
[fleet]
city = "test-city"
broker = {{ host = "127.0.0.1", port = {port} }}
segments = ["seg-a", "seg-b"]

[[devices]]
id = "dev-1"
site = "Main St / 5th"
cameras = [{{ id = "cam1", source = "rtsp://192.0.2.10/s1", segment_id = "seg-a" }}]

[[devices]]
id = "dev-2"
site = "Harbour Rd"
cameras = [{{ id = "cam1", source = "0", segment_id = "seg-b" }}]
"""


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    folder = tmp_path / "fleet"
    ca = CertificateAuthority.create(folder, PASSPHRASE.encode())
    create_model_key(folder, PASSPHRASE.encode())
    servers = folder / "servers"
    for name in ("broker", "cloud-grpc"):
        ca.issue_files(
            name, "server", servers / f"{name}.pem", servers / f"{name}.key", hosts=["127.0.0.1"]
        )
    ca.issue_files(
        CLOUD_ACCOUNT, "client", servers / f"{CLOUD_ACCOUNT}.pem", servers / f"{CLOUD_ACCOUNT}.key"
    )
    port = free_port()
    (folder / "fleet.toml").write_text(MANIFEST.format(port=port))
    (folder / "passphrase").write_text(PASSPHRASE)
    user = "root" if os.geteuid() == 0 else None  # pytest's tmp folders are private to root
    files = write_broker_config(
        folder, folder / "broker", port=port, bind="127.0.0.1", broker_user=user
    )
    broker = run_mosquitto_config(files.config_file, "127.0.0.1", port)
    config = CloudConfig(
        mqtt=MqttConfig(
            host="127.0.0.1",
            port=port,
            reconnect_max_s=1,
            tls=TlsConfig(
                ca_file=ca.cert_file,
                cert_file=servers / f"{CLOUD_ACCOUNT}.pem",
                key_file=servers / f"{CLOUD_ACCOUNT}.key",
            ),
        ),
        ingest=IngestConfig(client_id="cloud-enroll-test"),
        grpc=GrpcConfig(
            host="127.0.0.1",
            port=0,
            grace_s=1.0,
            drain_s=0,
            tls=GrpcTlsConfig(
                cert_file=servers / "cloud-grpc.pem", key_file=servers / "cloud-grpc.key"
            ),
            auth=AuthConfig(
                tokens=[
                    TokenConfig(name="ops", role="admin", sha256=hash_token(ADMIN)),
                    TokenConfig(name="dash", role="reader", sha256=hash_token(READER)),
                ]
            ),
        ),
        store=StoreConfig(path=tmp_path / "city.sqlite"),
        enrollment=EnrollmentConfig(
            fleet_dir=folder,
            manifest=folder / "fleet.toml",
            passphrase_file=folder / "passphrase",
        ),
    )
    cloud = CloudService(config)
    cloud.start()
    try:
        assert cloud.ingest.wait_connected(10.0), "cloud ingest did not connect over mTLS"
        yield Setup(folder, ca, broker, cloud)
    finally:
        cloud.stop()
        broker.stop()


def _status(device_id: str) -> bytes:
    return telemetry_pb2.DeviceStatus(
        device_id=device_id,
        state=telemetry_pb2.DeviceStatus.ONLINE,
        schema_version=SCHEMA_VERSION,
        time_ms=now_ms(),
        camera_ids=["cam1"],
    ).SerializeToString()


def _device(out: Path) -> tuple[EdgeConfig, MqttPublisher]:
    config_file = out / "edge.toml"
    edge = load_config(EdgeConfig, config_file).resolved(config_file.parent)
    return edge, MqttPublisher(edge.mqtt, client_id=edge.device_id)


def _fleet(setup: Setup) -> fleet_pb2_grpc.FleetServiceStub:
    return fleet_pb2_grpc.FleetServiceStub(setup.channel())


def _admin() -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {ADMIN}"),)


def test_a_valid_token_gives_a_certificate_that_connects_and_publishes(
    setup: Setup, tmp_path: Path
) -> None:
    token = setup.token("dev-1")
    out = tmp_path / "dev-1"
    enroll(setup.grpc_address, token, "dev-1", out, ca_file=setup.ca.cert_file)
    assert stat.S_IMODE((out / "device.key").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((out / "device.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=dev-1"
    edge, device = _device(out)
    assert edge.device_id == "dev-1"
    assert [c.segment_id for c in edge.cameras] == ["seg-a"]
    model_key = (setup.ca.fleet_dir / "ca" / "model-signing.pub").read_bytes()
    assert (out / "model-signing.pub").read_bytes() == model_key
    assert edge.models.public_key_file == out / "model-signing.pub"
    acked: list[str] = []
    try:
        device.start()
        assert device.wait_connected(10.0)
        device.publish(status_topic("dev-1"), _status("dev-1"), on_ack=lambda: acked.append("ok"))
        assert wait_until(lambda: acked == ["ok"])
        assert wait_until(lambda: [d.device_id for d in setup.cloud.store.devices()] == ["dev-1"])
    finally:
        device.stop()
    fleet = _fleet(setup)
    found = fleet.GetDevice(
        fleet_pb2.GetDeviceRequest(device_id="dev-1"), timeout=5, metadata=_admin()
    )
    assert found.enrolled
    assert not found.revoked
    assert found.certificate_serial == format(cert.serial_number, "x")
    listed = fleet.ListDevices(fleet_pb2.ListDevicesRequest(), timeout=5, metadata=_admin())
    assert [(d.device_id, d.enrolled) for d in listed.devices] == [("dev-1", True)]
    # Enrolling again into the same folder never replaces the key.
    with pytest.raises(ProvisioningError, match="enrolled already"):
        enroll(setup.grpc_address, setup.token("dev-1"), "dev-1", out, ca_file=setup.ca.cert_file)


def _refusal(setup: Setup, token: str, cn: str) -> str:
    _, csr = make_csr(cn)
    with setup.channel() as channel:
        try:
            request_certificate(channel, token, csr)
        except EnrollmentError as err:
            return str(err)
    return "accepted"


def test_used_expired_forged_or_mismatched_tokens_are_refused(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    once = setup.token("dev-1")
    assert _refusal(setup, once, "dev-1") == "accepted"
    assert "UNAUTHENTICATED" in _refusal(setup, once, "dev-1")  # used
    expired = create_token(setup.cloud.store, now_ms() - 120_000, 60, 1, "dev-1")
    assert "UNAUTHENTICATED" in _refusal(setup, expired, "dev-1")
    assert "UNAUTHENTICATED" in _refusal(setup, "forged-" + once[7:], "dev-1")
    bound = setup.token("dev-1")
    assert "FAILED_PRECONDITION" in _refusal(setup, bound, "dev-2")  # token is for dev-1
    assert "FAILED_PRECONDITION" in _refusal(setup, setup.token(None), "dev-9")  # not in manifest
    twice = setup.token(None, uses=2)
    assert _refusal(setup, twice, "dev-2") == "accepted"
    assert _refusal(setup, twice, "dev-1") == "accepted"
    assert "UNAUTHENTICATED" in _refusal(setup, twice, "dev-2")
    # A request that is not a CSR is refused before the token is spent.
    unspent = setup.token("dev-1")
    with setup.channel() as channel, pytest.raises(EnrollmentError, match="INVALID_ARGUMENT"):
        request_certificate(channel, unspent, b"not a csr")
    assert _refusal(setup, unspent, "dev-1") == "accepted"
    caplog.clear()


@pytest.mark.parametrize(
    ("rpc", "metadata", "code"),
    [
        ("ListDevices", (), grpc.StatusCode.UNAUTHENTICATED),
        (
            "ListDevices",
            (("authorization", f"Bearer {READER}"),),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        ("GetDevice", (("authorization", f"Bearer {READER}"),), grpc.StatusCode.PERMISSION_DENIED),
        ("RevokeDevice", (), grpc.StatusCode.UNAUTHENTICATED),
        (
            "RevokeDevice",
            (("authorization", f"Bearer {READER}"),),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    ],
)
def test_fleet_rpcs_need_the_admin_role(
    setup: Setup, rpc: str, metadata: tuple[tuple[str, str], ...], code: grpc.StatusCode
) -> None:
    requests = {
        "ListDevices": fleet_pb2.ListDevicesRequest(),
        "GetDevice": fleet_pb2.GetDeviceRequest(device_id="dev-1"),
        "RevokeDevice": fleet_pb2.RevokeDeviceRequest(device_id="dev-1"),
    }
    fleet = _fleet(setup)
    with pytest.raises(grpc.RpcError) as raised:
        getattr(fleet, rpc)(requests[rpc], timeout=5, metadata=metadata)
    assert raised.value.code() == code
    assert setup.cloud.store.revoked_devices() == frozenset()


def test_revoked_device_is_dead_lettered_then_shut_out_by_the_crl(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "dev-2"
    enroll(setup.grpc_address, setup.token("dev-2"), "dev-2", out, ca_file=setup.ca.cert_file)
    _, device = _device(out)
    acked: list[str] = []
    try:
        device.start()
        assert device.wait_connected(10.0)
        device.publish(status_topic("dev-2"), _status("dev-2"), on_ack=lambda: acked.append("1"))
        assert wait_until(lambda: len(setup.cloud.store.devices()) == 1)
        response = _fleet(setup).RevokeDevice(
            fleet_pb2.RevokeDeviceRequest(device_id="dev-2", reason="stolen"),
            timeout=5,
            metadata=_admin(),
        )
        assert response.device.revoked
        assert response.device.revoke_reason == "stolen"
        crl = x509.load_pem_x509_crl(setup.ca.crl_file.read_bytes())
        serials = {format(r.serial_number, "x") for r in crl}
        assert set(response.revoked_serials) == serials
        assert len(serials) == 1
        # Still connected until the broker reloads the CRL: the cloud rejects it meanwhile.
        device.publish(status_topic("dev-2"), _status("dev-2"), on_ack=lambda: acked.append("2"))
        assert wait_until(lambda: acked == ["1", "2"])
        assert wait_until(lambda: setup.cloud.store.dead_letter_codes().get("revoked_device") == 1)
    finally:
        device.stop()
    setup.broker.stop()
    setup.broker.restart()
    _, again = _device(out)
    try:
        again.start()
        assert not again.wait_connected(4.0)
    finally:
        again.stop()
    assert setup.cloud.ingest.wait_connected(15.0)  # the cloud's own certificate still works
    # A revoked device cannot enroll again with a fresh token either.
    assert "FAILED_PRECONDITION" in _refusal(setup, setup.token("dev-2"), "dev-2")
    caplog.clear()
