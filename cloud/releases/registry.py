"""The model registry: publish a signed release, find it again, read it out in chunks.

A release is a folder ``<registry_dir>/<version>/`` holding the ONNX and its card, and a
row in the store with the ONNX's sha256 and size, the card's sha256 and the fleet key's
signature of all four (``roadsense.models.signing``). Devices fetch releases by version
only: the file a version names comes from its row, never from the request.

A release is a congestion classifier or a vehicle detector: its card says which
(``roadsense.proto.model_kinds.card_kind``) and is checked by that kind's loader. The kind
is stored in the release's row, not read again from the card in the folder, because the
rollout controller knows releases only through the store (``RolloutStore.model``), on any
replica, whether or not it can see the registry folder; and the card in the folder is
covered by the signature already, so the row says nothing the signed card does not.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadsense.cloud.domain import PublishedModel
from roadsense.cloud.releases.rows import ReleaseStore
from roadsense.core.errors import ModelLoadError, ModelRegistryError, NotFoundError, RequestError
from roadsense.models.card import ModelCard, card_path_for, load_card, sha256_file
from roadsense.models.detection.card import DetectorCard, load_detector_card
from roadsense.models.signing import is_model_version, sign_model
from roadsense.proto.model_kinds import CONGESTION, DETECTOR, card_kind

logger = logging.getLogger(__name__)

CARD_LOADERS: dict[str, Callable[[Path], ModelCard | DetectorCard]] = {
    CONGESTION: load_card,
    DETECTOR: load_detector_card,
}
"""How each kind's card is checked against its ONNX (sha256 included)."""


def publisher_name() -> str:
    """Who publishes from here, for the record (user@host)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _copy_synced(source: Path, target: Path) -> None:
    with source.open("rb") as src, target.open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())


def _stage(onnx: Path, registry_dir: Path, version: str) -> Path:
    """Copy the ONNX and its card into a staging folder of the registry."""
    card = card_path_for(onnx)
    for path in (onnx, card):
        if not path.is_file():
            raise ModelRegistryError(f"{path}: no such file")
    staging = registry_dir / f".{version}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _copy_synced(onnx, staging / onnx.name)
        _copy_synced(card, staging / card.name)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelRegistryError(f"cannot copy {onnx} into {registry_dir}: {err}") from err
    return staging


def _release_card(staged: Path, given: Path) -> tuple[str, ModelCard | DetectorCard]:
    """The kind of the card beside the staged copy of ``given`` (an ONNX), and the card,
    checked by its kind's loader against the copied bytes; errors name the given files."""
    card_file = card_path_for(given)
    try:
        data = json.loads(card_path_for(staged).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelRegistryError(f"{card_file}: cannot read the model card: {err}") from err
    if not isinstance(data, dict):
        raise ModelRegistryError(f"{card_file}: the model card is not a JSON object")
    try:
        kind = card_kind(data)
    except ValueError as err:
        raise ModelRegistryError(f"{card_file}: {err}") from err
    try:
        return kind, CARD_LOADERS[kind](staged)
    except ModelLoadError as err:  # the staging folder is gone once this is read
        raise ModelRegistryError(str(err).replace(str(staged.parent), str(given.parent))) from err


def publish_model(
    store: ReleaseStore,
    registry_dir: Path,
    onnx: Path,
    version: str,
    key: Ed25519PrivateKey,
    *,
    now_ms: int,
    published_by: str,
) -> PublishedModel:
    """Store ``onnx`` and its card (a classifier's or a detector's) as release ``version``
    and record it signed, with the card's kind."""
    if not is_model_version(version):
        raise ModelRegistryError(
            f"version {version[:80]!r}: use 1-64 letters, digits, '.', '_', '+', '-'"
        )
    existing = store.model(version)
    if existing is not None:
        raise ModelRegistryError(
            f"model version {version} is published already; publish under a new version"
        )
    staging = _stage(onnx, registry_dir, version)
    target = registry_dir / version
    try:
        staged = staging / onnx.name
        kind, card = _release_card(staged, onnx)
        if card.version != version:
            raise ModelRegistryError(
                f"{card_path_for(onnx)} says version {card.version!r}, not {version!r}: "
                "reports name the card's version, so publish it as that or re-export"
            )
        card_bytes = card_path_for(staged).read_bytes()
        model = PublishedModel(
            version=version,
            name=card.name,
            onnx_file=onnx.name,
            size=staged.stat().st_size,
            sha256=sha256_file(staged),
            card_sha256=hashlib.sha256(card_bytes).hexdigest(),
            signature=b"",
            published_ms=now_ms,
            published_by=published_by,
            kind=kind,
        )
        signature = sign_model(key, model.sha256, model.size, version, model.card_sha256)
        model = replace(model, signature=signature)
        # A folder without a row is what a publish that died before recording leaves.
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not store.add_model(model):
        shutil.rmtree(target, ignore_errors=True)
        raise ModelRegistryError(f"model version {version} was published meanwhile")
    logger.info(
        "published %s model %s (%s, %d bytes)", kind, version, model.sha256[:12], model.size
    )
    return model


def release_files(registry_dir: Path, model: PublishedModel) -> tuple[Path, Path]:
    """(ONNX, card) of a release in the registry."""
    onnx = registry_dir / model.version / model.onnx_file
    return onnx, card_path_for(onnx)


def find_release(store: ReleaseStore, version: str) -> PublishedModel:
    """The published release ``version`` (a request's version, checked first)."""
    if not is_model_version(version):
        raise RequestError("version is not a valid model version")
    model = store.model(version)
    if model is None:
        raise NotFoundError(f"no published model {version!r}")
    return model


def read_chunks(path: Path, size: int, offset: int, chunk_bytes: int) -> Iterator[bytes]:
    """The bytes of ``path`` from ``offset`` on, in chunks; the file must be ``size`` long."""
    if offset < 0 or offset > size:
        raise RequestError(f"offset must be within 0..{size}")
    try:
        handle = path.open("rb")
    except OSError as err:
        raise ModelRegistryError(
            f"release file {path.name} cannot be read: {err.strerror}"
        ) from err
    with handle:
        if os.fstat(handle.fileno()).st_size != size:
            raise ModelRegistryError(f"release file {path.name} is not the size published")
        handle.seek(offset)
        while chunk := handle.read(chunk_bytes):
            yield chunk
