"""Fetch a published model over gRPC, resuming a cut download, and check it before use.

The offer (version, size, sha256, card sha256, signature) comes from the cloud's
``ModelUpdate`` command. The signature is checked first, with the fleet's public key from
the device bundle, so a forged offer costs no bytes. The ONNX streams into
``<folder>/<version>.onnx.partial`` from the bytes already there (cellular links are slow
and metered), then its size and sha256 must match the signed offer, and the card its
signed sha256, before the release is moved whole into ``<folder>/<version>/``. Torch-free.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError
from pydantic import ValidationError

from roadsense.core.errors import (
    CommandError,
    ModelCardError,
    ModelDownloadError,
    ModelHashError,
    ModelSignatureError,
    ModelSizeError,
    ModelUpdateError,
)
from roadsense.core.files import fsync_dir
from roadsense.edge.commands.remote import decode_command
from roadsense.models.card import ModelCard, card_path_for, sha256_file
from roadsense.models.detection.card import DetectorCard
from roadsense.models.signing import is_model_version, verify_model
from roadsense.proto.model_kinds import CONGESTION, DETECTOR, card_kind, model_kind
from roadsense.proto.refusals import Refusal
from roadsense.proto.v1 import fleet_pb2, fleet_pb2_grpc, telemetry_pb2

logger = logging.getLogger(__name__)

DEADLINE_S = 600.0
MAX_CARD_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ModelOffer:
    """A release as the cloud offers it: what the device checks the bytes against."""

    version: str
    size: int
    sha256: str
    card_sha256: str
    signature: bytes
    kind: str = CONGESTION
    """Which of the device's models the release replaces (``proto/model_kinds.py``)."""


@dataclass(frozen=True)
class ModelUpdateCommand:
    """A ModelUpdate as the device received it, decoded once (``read_model_update``)."""

    payload: bytes
    """The bytes as received: what the device keeps as its pending update."""
    request_id: str = ""
    rollout_id: str = ""
    version: str = ""
    """The version asked for, as far as it decodes (at most 64 characters, for replies)."""
    grpc_address: str = ""
    offer: ModelOffer | None = None
    """The release to fetch; None when the command is malformed."""
    problem: str = ""
    """Why the command is malformed; empty when it is well-formed."""

    @property
    def release(self) -> tuple[str, str] | None:
        """(version, sha256) of a well-formed command."""
        return (self.offer.version, self.offer.sha256) if self.offer is not None else None


def read_model_update(payload: bytes) -> ModelUpdateCommand:
    """Decode a ModelUpdate once; what is wrong with it lands in ``problem``, never raised."""
    try:
        command = decode_command(telemetry_pb2.ModelUpdate, payload)
    except CommandError as err:
        try:  # still name the request in the reply when the bytes decode at all
            raw = telemetry_pb2.ModelUpdate.FromString(payload)
        except DecodeError:
            return ModelUpdateCommand(payload, problem=str(err))
        return ModelUpdateCommand(
            payload, raw.request_id, raw.rollout_id, raw.version[:64], problem=str(err)
        )
    known = ModelUpdateCommand(
        payload, command.request_id, command.rollout_id, command.version[:64],
        command.grpc_address,
    )  # fmt: skip
    if not is_model_version(command.version):
        return replace(known, problem=f"model version {command.version[:64]!r} is not a version")
    if len(command.signature) != 64:
        return replace(known, problem="a ModelUpdate needs the release's 64-byte Ed25519 signature")
    try:
        kind = model_kind(command.kind)
    except ValueError as err:
        return replace(known, problem=str(err))
    offer = ModelOffer(
        command.version, command.size, command.sha256, command.card_sha256, command.signature,
        kind,
    )  # fmt: skip
    return replace(known, offer=offer)


def parse_model_update(payload: bytes) -> tuple[str, ModelOffer]:
    """(request id, offer) of a ModelUpdate command; CommandError when it is malformed."""
    update = read_model_update(payload)
    if update.offer is None:
        raise CommandError(update.problem)
    return update.request_id, update.offer


@dataclass(frozen=True)
class DownloadedModel:
    """A complete, verified release on the device."""

    onnx: Path
    card: Path
    resumed_from: int
    """Bytes of the ONNX the device held before this call."""
    fetched: int
    """Bytes of the ONNX received in this call."""


def partial_path(folder: Path, version: str) -> Path:
    """Where a release's ONNX accumulates while it downloads."""
    return folder / f"{version}.onnx.partial"


def _recover_staging(folder: Path, version: str, partial: Path) -> None:
    """A process killed while installing left the verified bytes in the staging folder:
    take them back as the partial file, so they are not fetched again."""
    staging = folder / f".{version}.staging"
    for onnx in staging.glob("*.onnx"):
        if not partial.exists():
            os.replace(onnx, partial)
            logger.info("model %s: took back the bytes an interrupted install left", version)
    shutil.rmtree(staging, ignore_errors=True)


def _held(partial: Path, size: int) -> int:
    try:
        held = partial.stat().st_size
    except FileNotFoundError:
        return 0
    if held > size:  # more than the release has: not the start of it
        partial.unlink()
        return 0
    return held


def _fetch_onnx(
    stub: fleet_pb2_grpc.FleetServiceStub,
    offer: ModelOffer,
    partial: Path,
    held: int,
    *,
    metadata: Sequence[tuple[str, str]],
    on_chunk: Callable[[int], None] | None,
) -> int:
    request = fleet_pb2.DownloadModelRequest(version=offer.version, offset=held)
    fetched = 0
    with partial.open("ab") as out:
        try:
            for chunk in stub.DownloadModel(request, timeout=DEADLINE_S, metadata=tuple(metadata)):
                if chunk.total_size != offer.size:
                    raise ModelSizeError(
                        f"model {offer.version}: the cloud serves {chunk.total_size} bytes, "
                        f"the fleet signed {offer.size}"
                    )
                if chunk.offset != held + fetched:
                    raise ModelDownloadError(
                        f"model {offer.version}: the cloud sent bytes at {chunk.offset}, "
                        f"expected {held + fetched}"
                    )
                out.write(chunk.data)
                out.flush()  # what arrived survives a cut link or a restart
                fetched += len(chunk.data)
                if on_chunk is not None:
                    on_chunk(held + fetched)
        except grpc.RpcError as err:
            raise ModelDownloadError(
                f"model {offer.version}: download refused or cut at byte {held + fetched} "
                f"({err.code().name}: {err.details()}); the bytes held are kept"
            ) from err
        finally:
            out.flush()
            os.fsync(out.fileno())
    return fetched


def _fetch_card(
    stub: fleet_pb2_grpc.FleetServiceStub, offer: ModelOffer, metadata: Sequence[tuple[str, str]]
) -> bytes:
    request = fleet_pb2.DownloadModelRequest(version=offer.version, part=fleet_pb2.MODEL_PART_CARD)
    data = bytearray()
    try:
        for chunk in stub.DownloadModel(request, timeout=DEADLINE_S, metadata=tuple(metadata)):
            data += chunk.data
            if len(data) > MAX_CARD_BYTES:
                raise ModelDownloadError(f"model {offer.version}: the card is too large")
    except grpc.RpcError as err:
        raise ModelDownloadError(
            f"model {offer.version}: card download failed ({err.code().name}: {err.details()})"
        ) from err
    return bytes(data)


def _check_card(offer: ModelOffer, data: bytes) -> ModelCard | DetectorCard:
    if hashlib.sha256(data).hexdigest() != offer.card_sha256:
        raise ModelCardError(
            f"model {offer.version}: the card's sha256 is not the signed one (tampered)"
        )
    card: ModelCard | DetectorCard
    try:
        kind = card_kind(json.loads(data))
        card = (DetectorCard if kind == DETECTOR else ModelCard).model_validate_json(data)
    except (ValueError, AttributeError, ValidationError) as err:
        raise ModelCardError(f"model {offer.version}: the card is not valid") from err
    if kind != offer.kind:
        raise ModelCardError(
            f"model {offer.version}: the card is of a {kind} model, not of a {offer.kind} model"
        )
    if card.onnx_sha256 != offer.sha256 or card.version != offer.version:
        raise ModelCardError(f"model {offer.version}: the card describes another model")
    if Path(card.onnx_file).name != card.onnx_file or not card.onnx_file.endswith(".onnx"):
        raise ModelCardError(f"model {offer.version}: the card's onnx_file is not a name")
    return card


def _install(
    folder: Path, offer: ModelOffer, partial: Path, card: ModelCard | DetectorCard, data: bytes
) -> Path:
    """Move the verified release into ``folder/<version>/`` in one rename."""
    target = folder / offer.version
    staging = folder / f".{offer.version}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    onnx = staging / card.onnx_file
    os.replace(partial, onnx)
    with card_path_for(onnx).open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    fsync_dir(staging)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    fsync_dir(folder)
    return target / card.onnx_file


def download_model(
    channel: grpc.Channel,
    offer: ModelOffer,
    public_key: bytes,
    folder: Path,
    *,
    metadata: Sequence[tuple[str, str]] = (),
    on_chunk: Callable[[int], None] | None = None,
) -> DownloadedModel:
    """Fetch, check and install the release ``offer`` names; refuse with the reason.

    ModelSignatureError: the offer, the bytes or the card are not what the fleet signed
    (a mismatching partial file is removed). ModelDownloadError: refused by the cloud or
    cut; the bytes held are kept and the next call resumes after them.
    """
    if not is_model_version(offer.version):
        raise ModelSignatureError(f"model version {offer.version[:64]!r} is not a version")
    verify_model(
        offer.signature, public_key, offer.sha256, offer.size, offer.version, offer.card_sha256
    )
    folder.mkdir(parents=True, exist_ok=True)
    partial = partial_path(folder, offer.version)
    _recover_staging(folder, offer.version, partial)
    held = _held(partial, offer.size)
    stub = fleet_pb2_grpc.FleetServiceStub(channel)
    fetched = 0
    if held < offer.size:
        fetched = _fetch_onnx(stub, offer, partial, held, metadata=metadata, on_chunk=on_chunk)
    size = partial.stat().st_size
    if size != offer.size:
        raise ModelDownloadError(
            f"model {offer.version}: holds {size} of {offer.size} bytes; try again to resume"
        )
    if sha256_file(partial) != offer.sha256:
        partial.unlink()
        raise ModelHashError(
            f"model {offer.version}: the bytes' sha256 is not the signed one (tampered or "
            "corrupt); removed them"
        )
    data = _fetch_card(stub, offer, metadata)
    card = _check_card(offer, data)
    onnx = _install(folder, offer, partial, card, data)
    logger.info(
        "model %s downloaded and verified (%d bytes fetched, %d held before)",
        offer.version,
        fetched,
        held,
    )
    return DownloadedModel(onnx, card_path_for(onnx), held, fetched)


def check_room(folder: Path, offer: ModelOffer, min_free_bytes: int) -> None:
    """Refuse (``disk``) an offer whose missing bytes would leave under ``min_free_bytes``
    free on the models' disk (the bytes a cut download left count as held)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = partial_path(folder, offer.version)
        held = partial.stat().st_size if partial.exists() else 0
        free = shutil.disk_usage(folder).free
    except OSError as err:
        raise ModelUpdateError(Refusal.DISK, f"{folder}: {err.strerror}") from err
    needed = max(offer.size - held, 0)
    if free - needed < min_free_bytes:
        raise ModelUpdateError(
            Refusal.DISK,
            f"model {offer.version} needs {needed} more bytes; {free} are free on "
            f"{folder} and {min_free_bytes} must stay free",
        )


def download_for_update(
    channel: grpc.Channel, offer: ModelOffer, public_key: bytes, folder: Path
) -> DownloadedModel:
    """``download_model`` for a rollout: each failure becomes the refusal the device answers
    the cloud with (``proto/refusals.py``)."""
    try:
        return download_model(channel, offer, public_key, folder)
    except ModelHashError as err:
        raise ModelUpdateError(Refusal.SHA256, str(err)) from err
    except ModelCardError as err:
        raise ModelUpdateError(Refusal.CARD, str(err)) from err
    except ModelSignatureError as err:
        raise ModelUpdateError(Refusal.SIGNATURE, str(err)) from err
    except ModelSizeError as err:
        raise ModelUpdateError(Refusal.SIZE, str(err)) from err
    except ModelDownloadError as err:
        raise ModelUpdateError(Refusal.DOWNLOAD, str(err)) from err
    except OSError as err:
        full = err.errno == errno.ENOSPC
        raise ModelUpdateError(
            Refusal.DISK, f"{folder}: {'disk full' if full else err.strerror}"
        ) from err
