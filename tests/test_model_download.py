"""FleetService.DownloadModel and the edge's downloader over a real gRPC server (mTLS).

The server is the cloud's FleetServicer behind the token interceptor, on 127.0.0.1 port 0,
requiring client certificates of a fleet CA made for the test; the registry is filled by
``publish_model`` with the fleet's model-signing key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadsense.cloud.auth import AuthConfig, TokenAuthInterceptor, TokenConfig, hash_token
from roadsense.cloud.config import CloudConfig, ModelRegistryConfig
from roadsense.cloud.fleet import FleetServicer
from roadsense.cloud.model_delivery import model_update
from roadsense.cloud.model_registry import publish_model
from roadsense.cloud.sqlite_store import SqliteStore
from roadsense.core.errors import CommandError, ModelDownloadError, ModelSignatureError
from roadsense.edge.models_update import (
    ModelOffer,
    device_channel,
    download_model,
    parse_model_update,
    partial_path,
)
from roadsense.models.card import load_card, sha256_file
from roadsense.models.signing import sign_model
from roadsense.proto.v1 import city_pb2, city_pb2_grpc
from roadsense.provisioning.ca import CertificateAuthority
from roadsense.provisioning.model_key import create_model_key, open_model_key

from .helpers import running_cloud
from .model_releases import write_release

pytestmark = pytest.mark.integration

PASSPHRASE = b"fleet passphrase for tests"
SIZE = 1_000_000
CHUNK = 16 * 1024
ADMIN, READER = "admin-token-for-tests", "reader-token-for-tests"


class CountingFleet(FleetServicer):
    """The real servicer, recording what each download call sent; it can cut a stream."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[tuple[int, int, int]] = []
        """(part, offset asked, bytes sent) per call."""
        self.cut_after: int | None = None

    def DownloadModel(  # noqa: N802 - gRPC method name
        self, request: city_pb2.DownloadModelRequest, context: grpc.ServicerContext
    ) -> Iterator[city_pb2.ModelChunk]:
        sent = 0
        try:
            for chunk in super().DownloadModel(request, context):
                if self.cut_after is not None and sent >= self.cut_after:
                    self.cut_after = None
                    context.abort(grpc.StatusCode.UNAVAILABLE, "link cut")
                sent += len(chunk.data)
                yield chunk
        finally:
            self.calls.append((request.part, request.offset, sent))

    def onnx_calls(self) -> list[tuple[int, int]]:
        return [(offset, sent) for part, offset, sent in self.calls if part == 0]


@dataclass
class Fleet:
    folder: Path
    ca: CertificateAuthority
    public_key: bytes
    key: Ed25519PrivateKey
    store: SqliteStore
    registry: Path
    servicer: CountingFleet
    address: str
    offer: ModelOffer

    def channel(self, cn: str) -> grpc.Channel:
        certs = self.folder / "certs"
        return device_channel(
            self.address,
            self.ca.cert_file.read_bytes(),
            (certs / f"{cn}.pem").read_bytes(),
            (certs / f"{cn}.key").read_bytes(),
        )


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    folder = tmp_path / "fleet"
    ca = CertificateAuthority.create(folder, PASSPHRASE)
    public_key = create_model_key(folder, PASSPHRASE).read_bytes()
    key = open_model_key(folder, PASSPHRASE)
    certs = folder / "certs"
    ca.issue_files("cloud-grpc", "server", certs / "server.pem", certs / "server.key",
                   hosts=["127.0.0.1"])  # fmt: skip
    for cn, kind in (("dev-1", "device"), ("dev-2", "device"), ("dashboard", "client")):
        ca.issue_files(cn, kind, certs / f"{cn}.pem", certs / f"{cn}.key")  # type: ignore[arg-type]
    store = SqliteStore(tmp_path / "city.sqlite")
    store.record_enrollment("dev-1", "1", 1)
    store.record_enrollment("dev-2", "2", 1)
    store.revoke_device("dev-2", "stolen", 2)
    registry = tmp_path / "registry"
    onnx = write_release(tmp_path / "export", "2.1.0", size=SIZE)
    model = publish_model(store, registry, onnx, "2.1.0", key, now_ms=3, published_by="test")
    auth = AuthConfig(
        tokens=[
            TokenConfig(name="ops", role="admin", sha256=hash_token(ADMIN)),
            TokenConfig(name="dash", role="reader", sha256=hash_token(READER)),
        ]
    )
    servicer = CountingFleet(
        store, None, frozenset(), models=ModelRegistryConfig(registry_dir=registry,
        chunk_bytes=CHUNK), open_api=False,
    )  # fmt: skip
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[TokenAuthInterceptor(auth)]
    )
    city_pb2_grpc.add_FleetServiceServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [((certs / "server.key").read_bytes(), (certs / "server.pem").read_bytes())],
        root_certificates=ca.cert_file.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    offer = ModelOffer(model.version, model.size, model.sha256, model.card_sha256, model.signature)
    try:
        yield Fleet(folder, ca, public_key, key, store, registry, servicer,
                    f"127.0.0.1:{port}", offer)  # fmt: skip
    finally:
        server.stop(0).wait()
        store.close()


def test_a_full_download_verifies_and_installs(fleet: Fleet, tmp_path: Path) -> None:
    with fleet.channel("dev-1") as channel:
        got = download_model(channel, fleet.offer, fleet.public_key, tmp_path / "device")
    assert got.onnx == tmp_path / "device" / "2.1.0" / "city.onnx"
    assert (got.resumed_from, got.fetched) == (0, SIZE)
    assert sha256_file(got.onnx) == fleet.offer.sha256
    assert load_card(got.onnx).version == "2.1.0"
    assert fleet.servicer.onnx_calls() == [(0, SIZE)]
    assert not partial_path(tmp_path / "device", "2.1.0").exists()


def test_a_cut_download_resumes_without_fetching_held_bytes(fleet: Fleet, tmp_path: Path) -> None:
    device = tmp_path / "device"
    fleet.servicer.cut_after = 20 * CHUNK
    with fleet.channel("dev-1") as channel:
        with pytest.raises(ModelDownloadError, match="cut at byte"):
            download_model(channel, fleet.offer, fleet.public_key, device)
        held = partial_path(device, "2.1.0").stat().st_size
        assert held == 20 * CHUNK
        got = download_model(channel, fleet.offer, fleet.public_key, device)
    assert (got.resumed_from, got.fetched) == (held, SIZE - held)
    assert fleet.servicer.onnx_calls() == [(0, held), (held, SIZE - held)]
    assert sha256_file(got.onnx) == fleet.offer.sha256
    # A process killed mid-download leaves its partial file: the next one carries on.
    again = tmp_path / "again"
    again.mkdir()
    partial_path(again, "2.1.0").write_bytes(got.onnx.read_bytes()[:12345])
    with fleet.channel("dev-1") as channel:
        resumed = download_model(channel, fleet.offer, fleet.public_key, again)
    assert (resumed.resumed_from, resumed.fetched) == (12345, SIZE - 12345)
    assert fleet.servicer.onnx_calls()[-1] == (12345, SIZE - 12345)


def _status(channel: grpc.Channel, version: str, offset: int = 0, token: str = "") -> str:
    stub = city_pb2_grpc.FleetServiceStub(channel)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    request = city_pb2.DownloadModelRequest(version=version, offset=offset)
    try:
        for _ in stub.DownloadModel(request, timeout=10, metadata=metadata):
            pass
    except grpc.RpcError as err:
        return f"{err.code().name}: {err.details()}"
    return "OK"


def test_only_published_versions_are_served_never_paths(fleet: Fleet, tmp_path: Path) -> None:
    with fleet.channel("dev-1") as channel:
        assert _status(channel, "2.1.0") == "OK"
        assert _status(channel, "9.9").startswith("NOT_FOUND")
        for version in ("../2.1.0", "2.1.0/city.onnx", "/etc/passwd", "", "2.1.0/../2.1.0"):
            assert _status(channel, version).startswith("INVALID_ARGUMENT"), version
        assert _status(channel, "2.1.0", offset=SIZE + 1).startswith("INVALID_ARGUMENT")
        assert _status(channel, "2.1.0", offset=-1).startswith("INVALID_ARGUMENT")
        # The downloader refuses an unpublished version, even one signed by the fleet.
        signature = sign_model(fleet.key, fleet.offer.sha256, SIZE, "9.9", fleet.offer.card_sha256)
        unpublished = dataclasses.replace(fleet.offer, version="9.9", signature=signature)
        with pytest.raises(ModelDownloadError, match="NOT_FOUND"):
            download_model(channel, unpublished, fleet.public_key, tmp_path / "device")
        with pytest.raises(ModelSignatureError, match="not a version"):
            download_model(channel, dataclasses.replace(fleet.offer, version="../x"),
                           fleet.public_key, tmp_path / "device")  # fmt: skip


def test_devices_of_the_fleet_and_admins_may_download_nobody_else(fleet: Fleet) -> None:
    with fleet.channel("dev-1") as channel:
        assert _status(channel, "2.1.0") == "OK"
    with fleet.channel("dev-2") as channel:
        assert _status(channel, "2.1.0") == "PERMISSION_DENIED: device 'dev-2' is revoked"
    with fleet.channel("dashboard") as channel:
        assert _status(channel, "2.1.0").startswith("PERMISSION_DENIED: DownloadModel needs")
        assert _status(channel, "2.1.0", token=READER).startswith("PERMISSION_DENIED: role")
        assert _status(channel, "2.1.0", token="forged").startswith("UNAUTHENTICATED")
        assert _status(channel, "2.1.0", token=ADMIN) == "OK"


def test_a_wrong_signature_or_tampered_bytes_are_refused(fleet: Fleet, tmp_path: Path) -> None:
    device = tmp_path / "device"
    other_key = Ed25519PrivateKey.generate()
    offer = fleet.offer
    resigned = dataclasses.replace(
        offer,
        signature=sign_model(other_key, offer.sha256, offer.size, offer.version,
                             offer.card_sha256),
    )  # fmt: skip
    with fleet.channel("dev-1") as channel:
        with pytest.raises(ModelSignatureError, match="does not verify"):
            download_model(channel, resigned, fleet.public_key, device)
        assert fleet.servicer.calls == []  # refused before a byte was fetched
        stored = fleet.registry / "2.1.0" / "city.onnx"
        data = bytearray(stored.read_bytes())
        data[SIZE // 2] ^= 0xFF
        stored.write_bytes(bytes(data))
        with pytest.raises(ModelSignatureError, match="sha256 is not the signed one"):
            download_model(channel, offer, fleet.public_key, device)
        assert not partial_path(device, "2.1.0").exists()
        data[SIZE // 2] ^= 0xFF
        stored.write_bytes(bytes(data))
        card = stored.with_suffix(".card.json")
        card.write_text(card.read_text().replace('"city"', '"evil"'))
        with pytest.raises(ModelSignatureError, match="card's sha256"):
            download_model(channel, offer, fleet.public_key, device)
    assert not (device / "2.1.0").exists()


def test_a_model_update_command_carries_what_the_device_checks(
    fleet: Fleet, tmp_path: Path
) -> None:
    model = fleet.store.model("2.1.0")
    assert model is not None
    command = model_update(model, "req-7", grpc_address=fleet.address, rollout_id="r1")
    request_id, offer = parse_model_update(command.SerializeToString())
    assert (request_id, offer) == ("req-7", fleet.offer)
    with fleet.channel("dev-1") as channel:
        got = download_model(channel, offer, fleet.public_key, tmp_path / "device")
    assert got.fetched == SIZE
    for bad, message in (
        (command.__class__(schema_version=9), "schema_version 9"),
        (model_update(dataclasses.replace(model, version="../x"), "r"), "not a version"),
        (model_update(dataclasses.replace(model, signature=b""), "r"), "64-byte"),
    ):
        with pytest.raises(CommandError, match=message):
            parse_model_update(bad.SerializeToString())
    with pytest.raises(CommandError, match="not a ModelUpdate"):
        parse_model_update(b"\xff\xff")


def test_the_cloud_service_serves_its_registry(cloud_config: CloudConfig, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    config = cloud_config.model_copy(update={"models": ModelRegistryConfig(registry_dir=registry)})
    folder = tmp_path / "fleet"
    CertificateAuthority.create(folder, PASSPHRASE)
    public_key = create_model_key(folder, PASSPHRASE).read_bytes()
    onnx = write_release(tmp_path / "export", "1.0", size=70_000)
    with running_cloud(config) as cloud:
        model = publish_model(cloud.store, registry, onnx, "1.0",
                              open_model_key(folder, PASSPHRASE), now_ms=1,
                              published_by="test")  # fmt: skip
        offer = ModelOffer(model.version, model.size, model.sha256, model.card_sha256,
                           model.signature)  # fmt: skip
        with grpc.insecure_channel(cloud.address) as channel:
            got = download_model(channel, offer, public_key, tmp_path / "device")
    assert got.onnx.read_bytes() == onnx.read_bytes()
