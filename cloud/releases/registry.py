"""The model registry: publish a signed release, find it again, read it out in chunks.

A release is a folder ``<registry_dir>/<version>/`` holding the ONNX and its card, and a
row in the store with the ONNX's sha256 and size, the card's sha256 and the fleet key's
signature of all four (``roadsense.models.signing``). Devices fetch releases by version
only: the file a version names comes from its row, never from the request.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadsense.cloud.domain import PublishedModel
from roadsense.cloud.releases.rows import ReleaseStore
from roadsense.core.errors import ModelRegistryError, NotFoundError, RequestError
from roadsense.models.card import card_path_for, load_card, sha256_file
from roadsense.models.signing import is_model_version, sign_model

logger = logging.getLogger(__name__)


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
    """Store ``onnx`` and its card as release ``version`` and record it signed."""
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
        card = load_card(staged)  # the copied bytes against their card's sha256
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
    logger.info("published model %s (%s, %d bytes)", version, model.sha256[:12], model.size)
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
