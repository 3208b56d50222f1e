"""Signatures of published models: the fleet's Ed25519 key over what identifies a release.

The signed message binds the ONNX's sha256 and size, the version it is published as and
the sha256 of its card, so a device that checks it knows the bytes it holds are the ones
the fleet published under that version, with that card. Torch-free: the edge imports it.
"""

from __future__ import annotations

import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from roadsense.core.errors import ModelSignatureError

DOMAIN = b"roadsense-model-release-v1\n"
"""Prefix of every signed message: a signature over anything else never verifies here."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def is_model_version(version: str) -> bool:
    """True when ``version`` can name a release (and a folder): no path, no spaces."""
    return bool(_VERSION.fullmatch(version)) and ".." not in version


def release_message(sha256: str, size: int, version: str, card_sha256: str) -> bytes:
    """The bytes the fleet key signs for one release."""
    if not is_model_version(version):
        raise ModelSignatureError(f"model version {version[:80]!r} is not a valid version")
    for name, value in (("sha256", sha256), ("card sha256", card_sha256)):
        if not _SHA256.fullmatch(value):
            raise ModelSignatureError(f"{name} must be 64 lowercase hex digits")
    if size < 0:
        raise ModelSignatureError("a model's size cannot be negative")
    return DOMAIN + f"{version}\n{size}\n{sha256}\n{card_sha256}\n".encode()


def sign_model(
    key: Ed25519PrivateKey, sha256: str, size: int, version: str, card_sha256: str
) -> bytes:
    """The fleet's signature of one release (64 bytes)."""
    return key.sign(release_message(sha256, size, version, card_sha256))


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """The fleet's model-signing public key from its PEM."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as err:
        raise ModelSignatureError("the model-signing public key is not a PEM public key") from err
    if not isinstance(key, Ed25519PublicKey):
        raise ModelSignatureError("the model-signing public key is not an Ed25519 key")
    return key


def verify_model(  # noqa: PLR0917 - the fields a release is signed over
    signature: bytes,
    public_key: bytes | Ed25519PublicKey,
    sha256: str,
    size: int,
    version: str,
    card_sha256: str,
) -> None:
    """Check a release's signature; ModelSignatureError says why it does not verify."""
    key = load_public_key(public_key) if isinstance(public_key, bytes) else public_key
    message = release_message(sha256, size, version, card_sha256)
    try:
        key.verify(signature, message)
    except InvalidSignature as err:
        raise ModelSignatureError(
            f"the signature of model {version} does not verify with the fleet's key "
            "(tampered, or signed by another key)"
        ) from err
