"""A fleet for the model delivery tests: CA, model-signing key, device certificates, and
the cloud's FleetServicer on a real gRPC server (127.0.0.1 port 0, mutual TLS, tokens)
serving a registry that ``publish_model`` fills."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadsense.cloud.api.auth import AuthConfig, TokenAuthInterceptor, TokenConfig, hash_token
from roadsense.cloud.config import ModelRegistryConfig
from roadsense.cloud.domain import PublishedModel
from roadsense.cloud.fleet.rpc import FleetServicer
from roadsense.cloud.releases.delivery import model_update
from roadsense.cloud.releases.registry import publish_model
from roadsense.cloud.store.sqlite import SqliteStore
from roadsense.core.mqtt import TlsConfig
from roadsense.edge.updates.download import ModelOffer
from roadsense.proto.client import ClientTls, open_channel
from roadsense.proto.v1 import fleet_pb2, fleet_pb2_grpc
from roadsense.provisioning.ca import CertificateAuthority
from roadsense.provisioning.model_key import create_model_key, model_key_files, open_model_key

PASSPHRASE = b"fleet passphrase for tests"
ADMIN, READER = "admin-token-for-tests", "reader-token-for-tests"


class CountingFleet(FleetServicer):
    """The real servicer, recording what each download call sent; it can cut a stream or
    pace it like a slow cellular link."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[tuple[int, int, int]] = []
        """(part, offset asked, bytes sent) per call."""
        self.cut_after: int | None = None
        self.chunk_delay_s = 0.0
        self._lock = threading.Lock()

    def DownloadModel(  # noqa: N802 - gRPC method name
        self, request: fleet_pb2.DownloadModelRequest, context: grpc.ServicerContext
    ) -> Iterator[fleet_pb2.ModelChunk]:
        sent = 0
        try:
            for chunk in super().DownloadModel(request, context):
                if self.cut_after is not None and sent >= self.cut_after:
                    self.cut_after = None
                    context.abort(grpc.StatusCode.UNAVAILABLE, "link cut")
                if self.chunk_delay_s:
                    time.sleep(self.chunk_delay_s)
                sent += len(chunk.data)
                yield chunk
        finally:
            with self._lock:
                self.calls.append((request.part, request.offset, sent))

    def onnx_calls(self) -> list[tuple[int, int]]:
        """(offset asked, bytes sent) of each ONNX download call."""
        with self._lock:
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

    def channel(self, cn: str) -> grpc.Channel:
        """A channel presenting the certificate of ``cn``."""
        certs = self.folder / "certs"
        return open_channel(
            self.address,
            ClientTls(
                self.ca.cert_file.read_bytes(),
                (certs / f"{cn}.pem").read_bytes(),
                (certs / f"{cn}.key").read_bytes(),
            ),
        )

    def tls(self, cn: str) -> TlsConfig:
        """The [models] grpc_tls of device ``cn``."""
        certs = self.folder / "certs"
        return TlsConfig(
            ca_file=self.ca.cert_file, cert_file=certs / f"{cn}.pem", key_file=certs / f"{cn}.key"
        )

    def public_key_file(self) -> Path:
        """The fleet's model-signing public key, as a bundle carries it."""
        return model_key_files(self.folder)[1]

    def publish(self, onnx: Path, version: str) -> PublishedModel:
        """``roadsense models publish`` of ``onnx`` as ``version``."""
        return publish_model(
            self.store, self.registry, onnx, version, self.key, now_ms=3, published_by="test"
        )

    def offer(self, version: str) -> ModelOffer:
        """The offer a ModelUpdate of a published ``version`` makes."""
        model = self.store.model(version)
        assert model is not None, version
        return ModelOffer(
            model.version, model.size, model.sha256, model.card_sha256, model.signature
        )

    def update(self, version: str, request_id: str, rollout_id: str = "") -> bytes:
        """The ModelUpdate command of a published ``version``, as the cloud sends it."""
        model = self.store.model(version)
        assert model is not None, version
        command = model_update(model, request_id, grpc_address=self.address, rollout_id=rollout_id)
        return command.SerializeToString()


@contextlib.contextmanager
def fleet_server(
    tmp_path: Path,
    devices: tuple[str, ...] = ("dev-1", "dev-2"),
    revoked: tuple[str, ...] = ("dev-2",),
    chunk_bytes: int = 16 * 1024,
) -> Iterator[Fleet]:
    """A running fleet whose store knows ``devices`` (``revoked`` among them revoked)."""
    folder = tmp_path / "fleet"
    ca = CertificateAuthority.create(folder, PASSPHRASE)
    public_key = create_model_key(folder, PASSPHRASE).read_bytes()
    key = open_model_key(folder, PASSPHRASE)
    certs = folder / "certs"
    ca.issue_files("cloud-grpc", "server", certs / "server.pem", certs / "server.key",
                   hosts=["127.0.0.1"])  # fmt: skip
    for cn in (*devices, "stranger"):
        ca.issue_files(cn, "device", certs / f"{cn}.pem", certs / f"{cn}.key")
    ca.issue_files("dashboard", "client", certs / "dashboard.pem", certs / "dashboard.key")
    store = SqliteStore(tmp_path / "city.sqlite")
    for serial, device in enumerate(devices, start=1):
        store.record_enrollment(device, str(serial), 1)
    for device in revoked:
        store.revoke_device(device, "stolen", 2)
    registry = tmp_path / "registry"
    auth = AuthConfig(
        tokens=[
            TokenConfig(name="ops", role="admin", sha256=hash_token(ADMIN)),
            TokenConfig(name="dash", role="reader", sha256=hash_token(READER)),
        ]
    )
    servicer = CountingFleet(
        store, None, frozenset(), models=ModelRegistryConfig(registry_dir=registry,
        chunk_bytes=chunk_bytes), open_api=False,
    )  # fmt: skip
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[TokenAuthInterceptor(auth)]
    )
    fleet_pb2_grpc.add_FleetServiceServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [((certs / "server.key").read_bytes(), (certs / "server.pem").read_bytes())],
        root_certificates=ca.cert_file.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield Fleet(folder, ca, public_key, key, store, registry, servicer, f"127.0.0.1:{port}")
    finally:
        server.stop(0).wait()
        store.close()
