"""Signed model releases: the fleet key, `models publish` / `models list`, the store rows."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadsense.cli.main import main
from roadsense.cloud.domain import PublishedModel
from roadsense.core.errors import ModelSignatureError
from roadsense.models.card import sha256_file
from roadsense.models.signing import sign_model, verify_model
from roadsense.provisioning.ca import PASSPHRASE_ENV, CertificateAuthority
from roadsense.provisioning.model_key import model_key_files, public_pem

from .model_releases import write_release
from .stores import StoreTarget

PASSPHRASE = "fleet passphrase for tests"
SHA = "ab" * 32
CARD_SHA = "cd" * 32


def test_a_valid_signature_verifies_and_any_change_fails() -> None:
    key = Ed25519PrivateKey.generate()
    public = public_pem(key)
    signature = sign_model(key, SHA, 1000, "2.1.0", CARD_SHA)
    verify_model(signature, public, SHA, 1000, "2.1.0", CARD_SHA)
    other = sign_model(Ed25519PrivateKey.generate(), SHA, 1000, "2.1.0", CARD_SHA)
    for args in (
        (signature, public, "ab" * 31 + "ac", 1000, "2.1.0", CARD_SHA),  # tampered bytes
        (signature, public, SHA, 1001, "2.1.0", CARD_SHA),  # a byte appended
        (signature, public, SHA, 1000, "2.1.1", CARD_SHA),  # another version
        (signature, public, SHA, 1000, "2.1.0", "cd" * 31 + "ce"),  # another card
        (other, public, SHA, 1000, "2.1.0", CARD_SHA),  # another key's signature
        (signature[:-1] + bytes([signature[-1] ^ 1]), public, SHA, 1000, "2.1.0", CARD_SHA),
    ):
        with pytest.raises(ModelSignatureError, match="does not verify"):
            verify_model(*args)
    with pytest.raises(ModelSignatureError, match="not a valid version"):
        verify_model(signature, public, SHA, 1000, "../2.1.0", CARD_SHA)


def test_the_store_keeps_each_version_once(store_target: StoreTarget) -> None:
    store = store_target.open()
    try:
        first = PublishedModel("1.0", "city", "city.onnx", 10, SHA, CARD_SHA, b"\x01" * 64, 5, "a")
        assert store.add_model(first)
        again = PublishedModel("1.0", "other", "x.onnx", 11, CARD_SHA, SHA, b"\x02" * 64, 6, "b")
        assert not store.add_model(again)
        second = PublishedModel("1.1", "city", "city.onnx", 12, SHA, CARD_SHA, b"\x03" * 64, 7, "a")
        assert store.add_model(second)
        assert store.models() == [first, second]
        assert store.model("1.0") == first
        assert store.model("9.9") is None
    finally:
        store.close()
    assert store_target.rows("SELECT version, size FROM model_releases ORDER BY version") == [
        ("1.0", 10),
        ("1.1", 12),
    ]


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    folder = tmp_path / "fleet"
    assert main(["provision", "init-ca", "--dir", str(folder)]) == 0
    return folder


def _cloud_toml(tmp_path: Path, fleet: Path) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(
        f'[store]\npath = "city.sqlite"\n[models]\nregistry_dir = "registry"\n'
        f'[enrollment]\nfleet_dir = "{fleet}"\nmanifest = "fleet.toml"\n'
    )
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_publish_stores_signs_and_lists(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, public_file = model_key_files(fleet)
    assert stat.S_IMODE(model_key_files(fleet)[0].stat().st_mode) == 0o600
    config = _cloud_toml(tmp_path, fleet)
    onnx = write_release(tmp_path / "export", "2.1.0")
    capsys.readouterr()
    code, out, err = _run(
        capsys, "models", "publish", str(onnx), "--version", "2.1.0",
        "--cloud-config", str(config), "--json",
    )  # fmt: skip
    assert code == 0, err
    release = json.loads(out)
    stored = tmp_path / "registry" / "2.1.0" / "city.onnx"
    assert stored.read_bytes() == onnx.read_bytes()
    assert (release["size"], release["sha256"]) == (onnx.stat().st_size, sha256_file(onnx))
    card = stored.with_suffix(".card.json")
    assert release["card_sha256"] == sha256_file(card)
    verify_model(
        bytes.fromhex(release["signature"]), public_file.read_bytes(),
        release["sha256"], release["size"], "2.1.0", release["card_sha256"],
    )  # fmt: skip
    code, out, _ = _run(capsys, "models", "list", "--cloud-config", str(config), "--json")
    assert code == 0
    assert [m["version"] for m in json.loads(out)["models"]] == ["2.1.0"]
    code, out, _ = _run(capsys, "models", "list", "--cloud-config", str(config))
    assert "2.1.0" in out.splitlines()[1]
    assert release["sha256"][:12] in out


def _refusal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = _run(capsys, *argv)
    assert code == 1, out
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("roadsense: error: ")]
    assert len(errors) == 1, err  # one line, never a traceback
    return errors[0]


def test_publish_refusals_are_one_line(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _cloud_toml(tmp_path, fleet)
    onnx = write_release(tmp_path / "export", "3.0")
    publish = ("models", "publish", str(onnx), "--cloud-config", str(config), "--version")
    assert _run(capsys, *publish, "3.0")[0] == 0
    assert "published already" in _refusal(capsys, *publish, "3.0")
    # A card that does not match its ONNX.
    other = write_release(tmp_path / "other", "3.1")
    other.write_bytes(other.read_bytes() + b"x")
    err = _refusal(capsys, "models", "publish", str(other), "--cloud-config", str(config),
                   "--version", "3.1")  # fmt: skip
    assert "does not match its card" in err
    # A version other than the card's, and a path for a version.
    assert "says version '3.0'" in _refusal(capsys, *publish, "3.9")
    assert "version '../x'" in _refusal(capsys, *publish, "../x")
    assert not (tmp_path / "registry" / "3.1").exists()
    assert not (tmp_path / "registry" / "3.9").exists()
    # A wrong passphrase, then a fleet without a model key.
    fresh = write_release(tmp_path / "fresh", "4.0")
    again = ("models", "publish", str(fresh), "--cloud-config", str(config), "--version", "4.0")
    monkeypatch.setenv(PASSPHRASE_ENV, "a wrong passphrase")
    assert "wrong passphrase" in _refusal(capsys, *again)
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    for path in model_key_files(fleet):
        path.unlink()
    assert "init-model-key" in _refusal(capsys, *again)
    _, out, _ = _run(capsys, "models", "list", "--cloud-config", str(config), "--json")
    assert [m["version"] for m in json.loads(out)["models"]] == ["3.0"]


def test_an_existing_fleet_gets_its_model_key_with_its_own_passphrase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "old-fleet"
    CertificateAuthority.create(folder, PASSPHRASE.encode())  # a fleet from before the key
    monkeypatch.setenv(PASSPHRASE_ENV, "a wrong passphrase")
    command = ("provision", "init-model-key", "--dir", str(folder))
    assert "wrong CA passphrase" in _refusal(capsys, *command)
    assert not model_key_files(folder)[0].exists()
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    assert _run(capsys, *command)[0] == 0
    assert "refusing to overwrite" in _refusal(capsys, *command)
    config = _cloud_toml(tmp_path, folder)
    onnx = write_release(tmp_path / "export", "1.0")
    code, _, err = _run(capsys, "models", "publish", str(onnx), "--version", "1.0",
                        "--cloud-config", str(config))  # fmt: skip
    assert code == 0, err
