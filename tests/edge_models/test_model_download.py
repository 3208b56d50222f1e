"""FleetService.DownloadModel and the edge's downloader over a real gRPC server (mTLS).

The server is the cloud's FleetServicer behind the token interceptor, on 127.0.0.1 port 0,
requiring client certificates of a fleet CA made for the test; the registry is filled by
``publish_model`` with the fleet's model-signing key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadsense.cloud.config import CloudConfig, ModelRegistryConfig
from roadsense.cloud.releases.delivery import model_update
from roadsense.cloud.releases.registry import publish_model
from roadsense.core.errors import CommandError, ModelDownloadError, ModelSignatureError
from roadsense.edge.updates.download import (
    ModelOffer,
    download_model,
    parse_model_update,
    partial_path,
)
from roadsense.models.card import load_card, sha256_file
from roadsense.models.signing import sign_model
from roadsense.proto.client import ClientTls, open_channel
from roadsense.proto.v1 import fleet_pb2, fleet_pb2_grpc
from roadsense.provisioning.ca import CertificateAuthority
from roadsense.provisioning.model_key import create_model_key, open_model_key

from ..support.fleet_server import ADMIN, PASSPHRASE, READER, Fleet, fleet_server
from ..support.helpers import running_cloud
from ..support.model_releases import write_release

pytestmark = pytest.mark.integration

SIZE = 1_000_000
CHUNK = 16 * 1024


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with fleet_server(tmp_path, chunk_bytes=CHUNK) as fleet:
        fleet.publish(write_release(tmp_path / "export", "2.1.0", size=SIZE), "2.1.0")
        yield fleet


def test_a_full_download_verifies_and_installs(fleet: Fleet, tmp_path: Path) -> None:
    with fleet.channel("dev-1") as channel:
        got = download_model(channel, fleet.offer("2.1.0"), fleet.public_key, tmp_path / "device")
    assert got.onnx == tmp_path / "device" / "2.1.0" / "city.onnx"
    assert (got.resumed_from, got.fetched) == (0, SIZE)
    assert sha256_file(got.onnx) == fleet.offer("2.1.0").sha256
    assert load_card(got.onnx).version == "2.1.0"
    assert fleet.servicer.onnx_calls() == [(0, SIZE)]
    assert not partial_path(tmp_path / "device", "2.1.0").exists()


def test_a_cut_download_resumes_without_fetching_held_bytes(fleet: Fleet, tmp_path: Path) -> None:
    device = tmp_path / "device"
    fleet.servicer.cut_after = 20 * CHUNK
    with fleet.channel("dev-1") as channel:
        with pytest.raises(ModelDownloadError, match="cut at byte"):
            download_model(channel, fleet.offer("2.1.0"), fleet.public_key, device)
        held = partial_path(device, "2.1.0").stat().st_size
        assert held == 20 * CHUNK
        got = download_model(channel, fleet.offer("2.1.0"), fleet.public_key, device)
    assert (got.resumed_from, got.fetched) == (held, SIZE - held)
    assert fleet.servicer.onnx_calls() == [(0, held), (held, SIZE - held)]
    assert sha256_file(got.onnx) == fleet.offer("2.1.0").sha256
    # A process killed mid-download leaves its partial file: the next one carries on.
    again = tmp_path / "again"
    again.mkdir()
    partial_path(again, "2.1.0").write_bytes(got.onnx.read_bytes()[:12345])
    with fleet.channel("dev-1") as channel:
        resumed = download_model(channel, fleet.offer("2.1.0"), fleet.public_key, again)
    assert (resumed.resumed_from, resumed.fetched) == (12345, SIZE - 12345)
    assert fleet.servicer.onnx_calls()[-1] == (12345, SIZE - 12345)


def _status(channel: grpc.Channel, version: str, offset: int = 0, token: str = "") -> str:
    stub = fleet_pb2_grpc.FleetServiceStub(channel)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    request = fleet_pb2.DownloadModelRequest(version=version, offset=offset)
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
        offer = fleet.offer("2.1.0")
        signature = sign_model(fleet.key, offer.sha256, SIZE, "9.9", offer.card_sha256)
        unpublished = dataclasses.replace(offer, version="9.9", signature=signature)
        with pytest.raises(ModelDownloadError, match="NOT_FOUND"):
            download_model(channel, unpublished, fleet.public_key, tmp_path / "device")
        with pytest.raises(ModelSignatureError, match="not a version"):
            download_model(channel, dataclasses.replace(offer, version="../x"),
                           fleet.public_key, tmp_path / "device")  # fmt: skip


def test_devices_of_the_fleet_and_admins_may_download_nobody_else(
    fleet: Fleet, tmp_path: Path
) -> None:
    with fleet.channel("dev-1") as channel:
        assert _status(channel, "2.1.0") == "OK"
    with fleet.channel("dev-2") as channel:
        assert _status(channel, "2.1.0") == "PERMISSION_DENIED: device 'dev-2' is revoked"
    # A certificate of the fleet CA for a device the fleet never enrolled.
    with fleet.channel("stranger") as channel:
        assert _status(channel, "2.1.0").startswith("PERMISSION_DENIED: DownloadModel needs")
    # Posing as dev-1 with a certificate another CA signed: the handshake fails.
    other = CertificateAuthority.create(tmp_path / "other", PASSPHRASE)
    forged = tmp_path / "forged"
    other.issue_files("dev-1", "device", forged / "dev-1.pem", forged / "dev-1.key")
    with open_channel(
        fleet.address,
        ClientTls(
            fleet.ca.cert_file.read_bytes(),
            (forged / "dev-1.pem").read_bytes(),
            (forged / "dev-1.key").read_bytes(),
        ),
    ) as channel:
        assert _status(channel, "2.1.0").startswith("UNAVAILABLE")
    assert [call for call in fleet.servicer.calls if call[2]] == [(0, 0, SIZE)]
    with fleet.channel("dashboard") as channel:
        assert _status(channel, "2.1.0").startswith("PERMISSION_DENIED: DownloadModel needs")
        assert _status(channel, "2.1.0", token=READER).startswith("PERMISSION_DENIED: role")
        assert _status(channel, "2.1.0", token="forged").startswith("UNAUTHENTICATED")
        assert _status(channel, "2.1.0", token=ADMIN) == "OK"


def test_a_wrong_signature_or_tampered_bytes_are_refused(fleet: Fleet, tmp_path: Path) -> None:
    device = tmp_path / "device"
    other_key = Ed25519PrivateKey.generate()
    offer = fleet.offer("2.1.0")
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
    assert (request_id, offer) == ("req-7", fleet.offer("2.1.0"))
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
