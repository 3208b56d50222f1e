"""The gRPC API over TLS and mutual TLS, with certificates made for the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig, GrpcTlsConfig
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

from ..support.certs import make_pki

pytestmark = pytest.mark.integration


def _serve(cloud_config: CloudConfig, tls: GrpcTlsConfig) -> CloudService:
    grpc_config = cloud_config.grpc.model_copy(update={"tls": tls})
    service = CloudService(cloud_config.model_copy(update={"grpc": grpc_config}))
    service.start()
    return service


def _call(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = (
        grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    )
    with channel:
        try:
            city_pb2_grpc.CityServiceStub(channel).GetCityState(
                city_pb2.GetCityStateRequest(), timeout=3
            )
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    return make_pki(tmp_path / "pki", ["dashboard"])


@pytest.fixture
def tls_cloud(cloud_config: CloudConfig, pki: Path) -> Iterator[CloudService]:
    service = _serve(
        cloud_config, GrpcTlsConfig(cert_file=pki / "server.pem", key_file=pki / "server.key")
    )
    yield service
    service.stop()


def test_tls_server(tls_cloud: CloudService, pki: Path) -> None:
    trusted = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    assert _call(tls_cloud.address, trusted) == grpc.StatusCode.OK
    assert _call(tls_cloud.address, None) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate(cloud_config: CloudConfig, pki: Path) -> None:
    service = _serve(
        cloud_config,
        GrpcTlsConfig(
            cert_file=pki / "server.pem",
            key_file=pki / "server.key",
            client_ca_file=pki / "ca.pem",
        ),
    )
    try:
        ca = (pki / "ca.pem").read_bytes()
        anonymous = grpc.ssl_channel_credentials(root_certificates=ca)
        with_cert = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=(pki / "dashboard.key").read_bytes(),
            certificate_chain=(pki / "dashboard.pem").read_bytes(),
        )
        assert _call(service.address, with_cert) == grpc.StatusCode.OK
        assert _call(service.address, anonymous) == grpc.StatusCode.UNAVAILABLE
    finally:
        service.stop()
