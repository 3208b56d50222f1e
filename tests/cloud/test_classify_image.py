"""CityService.ClassifyImage over real gRPC: good images get the shipped model's
calibrated probabilities (the same the edge's backend reports) and a heat map on request;
empty, oversized and non-images get INVALID_ARGUMENT naming the problem; roles feed and
admin only."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import grpc
import numpy as np
import pytest

from roadsense.cloud.api.auth import AuthConfig, TokenConfig, hash_token
from roadsense.cloud.app import CloudService
from roadsense.cloud.config import ClassifyConfig, CloudConfig
from roadsense.edge.backends.classifier import create_classifier
from roadsense.models.shipped import DEFAULT_CNN
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

from ..edge_models.test_tensorrt_backend import _frames

pytestmark = pytest.mark.integration
TOKENS = {"reader": "r-token-1234567890", "feed": "f-token-1234567890", "admin": "a-token-123456"}
LIMIT = 200_000


@pytest.fixture
def service(cloud_config: CloudConfig) -> Iterator[CloudService]:
    auth = AuthConfig(
        tokens=[
            TokenConfig(name=f"{role}-client", role=role, sha256=hash_token(token))  # type: ignore[arg-type]
            for role, token in TOKENS.items()
        ]
    )
    config = cloud_config.model_copy(
        update={
            "grpc": cloud_config.grpc.model_copy(update={"auth": auth}),
            "classify": ClassifyConfig(max_image_bytes=LIMIT),
        }
    )
    running = CloudService(config)
    running.start()
    yield running
    running.stop()


def _call(
    service: CloudService, image: bytes, role: str = "feed", explain: bool = False
) -> city_pb2.ClassifyImageResponse:
    with grpc.insecure_channel(service.address) as channel:
        stub = city_pb2_grpc.CityServiceStub(channel)
        response: city_pb2.ClassifyImageResponse = stub.ClassifyImage(
            city_pb2.ClassifyImageRequest(image=image, explain=explain),
            timeout=20,
            metadata=(("authorization", f"Bearer {TOKENS[role]}"),),
        )
        return response


def _png(frame: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", frame)
    assert ok
    return encoded.tobytes()


def test_a_frame_gets_the_same_calibrated_probabilities_as_the_edge(
    service: CloudService,
) -> None:
    frame = _frames(1)[0]
    response = _call(service, _png(frame))
    edge = create_classifier("onnxruntime", DEFAULT_CNN)
    expected = edge.classify([frame])[0]
    assert list(response.labels) == edge.labels
    np.testing.assert_allclose(list(response.probabilities), expected, atol=1e-5)
    assert response.level == edge.labels[int(expected.argmax())]
    assert response.confidence == pytest.approx(float(expected.max()), abs=1e-5)
    assert response.model_version == edge.card.version
    assert response.heat_map_png == b""
    jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    assert _call(service, jpeg, role="admin").level in edge.labels


def test_explain_returns_the_heat_map_as_a_png(service: CloudService) -> None:
    frame = _frames(1)[0]
    response = _call(service, _png(frame), explain=True)
    heat = cv2.imdecode(np.frombuffer(response.heat_map_png, np.uint8), cv2.IMREAD_COLOR)
    assert heat is not None
    assert heat.shape == frame.shape


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"", "empty (0 bytes)"),
        (b"GIF89a not a frame", "not a JPEG or PNG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "cannot be decoded"),
        (b"\xff\xd8\xff" + b"\x00" * (LIMIT + 1), f"more than the limit of {LIMIT}"),
    ],
    ids=["empty", "not-an-image", "corrupt-png", "oversized"],
)
def test_bad_images_are_refused_by_name(service: CloudService, image: bytes, message: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _call(service, image)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(caught.value.details())


def test_only_feed_and_admin_may_classify(service: CloudService) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _call(service, _png(_frames(1)[0]), role="reader")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
