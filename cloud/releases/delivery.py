"""FleetService.DownloadModel's logic: who may fetch, and the chunks of a published file.

A device proves who it is with its certificate (mutual TLS against the fleet CA): its CN
must be a device the fleet knows (configuration, enrollment registry or telemetry) and not
revoked. An admin token (checked by the auth interceptor) may fetch too, for operators;
a cloud without tokens is open to anyone who reaches it, as its other RPCs are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from roadsense.cloud.domain import PublishedModel
from roadsense.cloud.fleet.rows import FleetStore
from roadsense.cloud.releases.registry import find_release, read_chunks, release_files
from roadsense.cloud.releases.rows import ReleaseStore
from roadsense.core.errors import AccessDeniedError, ModelRegistryError
from roadsense.proto import SCHEMA_VERSION
from roadsense.proto.v1 import telemetry_pb2

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who a download request comes from, as its credentials show."""

    certificate_cn: str | None
    bearer_token: bool


def authorize_download(
    store: FleetStore, caller: Caller, *, fleet_devices: frozenset[str], open_api: bool
) -> str:
    """The name of who may download (a device id, 'operator' or 'anonymous'), or refuse."""
    cn = caller.certificate_cn
    if cn is not None:
        if cn in store.revoked_devices():
            raise AccessDeniedError(f"device {cn[:64]!r} is revoked")
        known = (
            cn in fleet_devices
            or cn in store.registry()
            or any(d.device_id == cn for d in store.devices())
        )
        if known:
            return cn
    if caller.bearer_token and not open_api:
        return "operator"  # the interceptor checked the token's role
    if open_api:
        return "anonymous"
    raise AccessDeniedError(
        "DownloadModel needs the certificate of a device of this fleet (mutual TLS) "
        "or an admin token"
    )


@dataclass(frozen=True)
class Chunk:
    """A piece of a release file."""

    offset: int
    data: bytes
    total_size: int


def release_chunks(
    store: ReleaseStore,
    registry_dir: Path,
    version: str,
    *,
    card: bool,
    offset: int,
    chunk_bytes: int,
) -> Iterator[Chunk]:
    """The chunks of a published release's ONNX (or card) from ``offset`` on."""
    model = find_release(store, version)
    onnx_file, card_file = release_files(registry_dir, model)
    path, size = onnx_file, model.size
    if card:
        try:
            path, size = card_file, card_file.stat().st_size
        except OSError as err:
            raise ModelRegistryError(f"the card of model {version} is missing") from err
    for data in read_chunks(path, size, offset, chunk_bytes):
        yield Chunk(offset, data, size)
        offset += len(data)


def model_update(
    model: PublishedModel, request_id: str, *, grpc_address: str = "", rollout_id: str = ""
) -> telemetry_pb2.ModelUpdate:
    """The command that tells a device to fetch ``model`` (on its cmd/model topic) and put
    it in force as its model of the release's kind."""
    return telemetry_pb2.ModelUpdate(
        schema_version=SCHEMA_VERSION,
        request_id=request_id,
        version=model.version,
        size=model.size,
        sha256=model.sha256,
        card_sha256=model.card_sha256,
        signature=model.signature,
        grpc_address=grpc_address,
        rollout_id=rollout_id,
        kind=model.kind,
    )
