"""The fleet's model-signing key: Ed25519, beside the CA and encrypted like its key.

``ca/model-signing.key`` holds the private key (PKCS#8, encrypted with the fleet's CA
passphrase, mode 0600); ``ca/model-signing.pub`` the public key devices verify models with
(it goes into device bundles and enrollment responses).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadsense.core.errors import ProvisioningError
from roadsense.core.files import replace_file
from roadsense.provisioning.ca import CertificateAuthority, write_private

logger = logging.getLogger(__name__)

PRIVATE_FILE = "model-signing.key"
PUBLIC_FILE = "model-signing.pub"


def model_key_files(fleet_dir: Path) -> tuple[Path, Path]:
    """(private, public) key files of a fleet folder."""
    folder = CertificateAuthority.ca_dir(fleet_dir)
    return folder / PRIVATE_FILE, folder / PUBLIC_FILE


def public_pem(key: Ed25519PrivateKey) -> bytes:
    """PEM (SubjectPublicKeyInfo) of the key's public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def create_model_key(fleet_dir: Path, passphrase: bytes) -> Path:
    """A new model-signing key in the fleet folder; refuses to replace one. The public file."""
    private, public = model_key_files(fleet_dir)
    if private.exists() or public.exists():
        raise ProvisioningError(
            f"{private.parent}: a model-signing key already exists there; refusing to overwrite it"
        )
    private.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    write_private(private, encrypted)
    replace_file(public, public_pem(key), 0o644)
    logger.info("created the model-signing key in %s", private.parent)
    return public


def open_model_key(fleet_dir: Path, passphrase: bytes) -> Ed25519PrivateKey:
    """Unlock the fleet's model-signing key."""
    private, _ = model_key_files(fleet_dir)
    try:
        data = private.read_bytes()
    except FileNotFoundError as err:
        raise ProvisioningError(
            f"{private}: no model-signing key (run `roadsense provision init-model-key`)"
        ) from err
    except OSError as err:
        raise ProvisioningError(f"{private}: cannot read: {err.strerror}") from err
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except (ValueError, TypeError) as err:
        raise ProvisioningError(f"{private}: wrong passphrase for the model-signing key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ProvisioningError(f"{private}: not an Ed25519 key")
    return key


def model_public_key(fleet_dir: Path) -> bytes | None:
    """The fleet's model-signing public key (PEM), or None when the fleet has none yet."""
    _, public = model_key_files(fleet_dir)
    try:
        return public.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ProvisioningError(f"{public}: cannot read: {err.strerror}") from err
