"""Signed model releases: the fleet key, `models publish` / `models list`, the store rows."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadsense.cli.main import main
from roadsense.cloud.domain import PublishedModel
from roadsense.cloud.store.migrations import MIGRATIONS
from roadsense.cloud.store.postgres_migrations import POSTGRES_MIGRATIONS, migrate_postgres
from roadsense.core.errors import ModelSignatureError
from roadsense.core.sqlite import migrate, open_database
from roadsense.models.card import sha256_file
from roadsense.models.signing import sign_model, verify_model
from roadsense.proto.model_kinds import CONGESTION, DETECTOR
from roadsense.provisioning.ca import PASSPHRASE_ENV, CertificateAuthority
from roadsense.provisioning.model_key import model_key_files, public_pem

from ..support.model_releases import write_detector_release, write_release
from ..support.stores import StoreTarget

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
        detector = PublishedModel(
            "d1", "vehicles", "detector.onnx", 13, SHA, CARD_SHA, b"\x04" * 64, 8, "a", DETECTOR
        )
        assert store.add_model(detector)
        assert store.models() == [first, second, detector]
        assert store.model("1.0") == first
        assert store.model("d1") == detector
        assert store.model("9.9") is None
    finally:
        store.close()
    assert store_target.rows("SELECT version, size, kind FROM model_releases ORDER BY version") == [
        ("1.0", 10, CONGESTION),
        ("1.1", 12, CONGESTION),
        ("d1", 13, DETECTOR),
    ]


def test_releases_published_before_kinds_are_classifiers(store_target: StoreTarget) -> None:
    # Stores from before detectors hold classifier releases only: the registry refused others.
    values = ["0.9", "city", "city.onnx", 10, SHA, CARD_SHA, "01" * 64, 5, "a"]
    insert = (
        "INSERT INTO model_releases (version, name, onnx_file, size, sha256, card_sha256, "
        "signature, published_ms, published_by) VALUES ({})"
    )
    if store_target.kind == "sqlite":
        db = open_database(store_target.config.path)
        migrate(db, [m for m in MIGRATIONS if m.name != "0012_detector_rollouts"])
        db.execute(insert.format(", ".join("?" * len(values))), values)
        db.conn.commit()
        db.close()
    else:
        assert store_target.config.postgres_url is not None
        with psycopg.connect(store_target.config.postgres_url) as conn:
            migrate_postgres(conn, POSTGRES_MIGRATIONS[:-1])
            conn.execute(insert.format(", ".join(["%s"] * len(values))), values)
    store = store_target.open()
    try:
        (old,) = store.models()
    finally:
        store.close()
    assert (old.version, old.kind, old.signature) == ("0.9", CONGESTION, b"\x01" * 64)


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


def test_publish_a_detector_and_list_the_kind_of_each_release(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, public_file = model_key_files(fleet)
    config = _cloud_toml(tmp_path, fleet)
    classifier = write_release(tmp_path / "export", "2.1.0")
    detector = write_detector_release(tmp_path / "detector", "1.1.0-nano")
    capsys.readouterr()
    code, out, _ = _run(capsys, "models", "publish", str(classifier), "--version", "2.1.0",
                        "--cloud-config", str(config))  # fmt: skip
    assert code == 0
    size = classifier.stat().st_size
    assert out.startswith(f"published city 2.1.0 ({CONGESTION}): {size} bytes, sha256 ")
    code, out, err = _run(
        capsys, "models", "publish", str(detector), "--version", "1.1.0-nano",
        "--cloud-config", str(config), "--json",
    )  # fmt: skip
    assert code == 0, err
    release = json.loads(out)
    assert (release["kind"], release["name"], release["onnx_file"]) == (
        DETECTOR,
        "vehicles",
        "detector.onnx",
    )
    stored = tmp_path / "registry" / "1.1.0-nano" / "detector.onnx"
    assert stored.read_bytes() == detector.read_bytes()
    card = stored.with_suffix(".card.json")
    assert json.loads(card.read_text())["kind"] == DETECTOR
    assert release["card_sha256"] == sha256_file(card)
    verify_model(
        bytes.fromhex(release["signature"]), public_file.read_bytes(),
        release["sha256"], release["size"], "1.1.0-nano", release["card_sha256"],
    )  # fmt: skip
    code, out, _ = _run(capsys, "models", "list", "--cloud-config", str(config), "--json")
    assert [(m["version"], m["kind"]) for m in json.loads(out)["models"]] == [
        ("2.1.0", CONGESTION),
        ("1.1.0-nano", DETECTOR),
    ]
    code, out, _ = _run(capsys, "models", "list", "--cloud-config", str(config))
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["version", "kind", "name"]
    assert [row.split()[:3] for row in rows] == [
        ["2.1.0", CONGESTION, "city"],
        ["1.1.0-nano", DETECTOR, "vehicles"],
    ]


def test_a_card_of_an_unknown_or_wrong_kind_is_refused_in_one_line(
    fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _cloud_toml(tmp_path, fleet)

    def refused(onnx: Path, version: str) -> str:
        return _refusal(capsys, "models", "publish", str(onnx), "--version", version,
                        "--cloud-config", str(config))  # fmt: skip

    tracker = write_detector_release(tmp_path / "tracker", "1.0", kind="tracker")
    assert refused(tracker, "1.0") == (
        f"roadsense: error: {tracker.with_suffix('.card.json')}: unknown model kind "
        "'tracker'; known: congestion, detector"
    )
    # A detector card is checked as a detector's: here a score no detector reports.
    sure = write_detector_release(tmp_path / "sure", "1.1", score_threshold=1.5)
    assert "score_threshold" in refused(sure, "1.1")
    # A classifier's card that claims to be a detector's lacks what a detector's says.
    claims = write_release(tmp_path / "claims", "1.2")
    card = json.loads(claims.with_suffix(".card.json").read_text())
    claims.with_suffix(".card.json").write_text(json.dumps({**card, "kind": DETECTOR}))
    assert "nms_iou" in refused(claims, "1.2")
    # And the detector's version must be the card's, as a classifier's.
    detector = write_detector_release(tmp_path / "detector", "1.3")
    assert "says version '1.3', not '1.4'" in refused(detector, "1.4")
    assert sorted(p.name for p in (tmp_path / "registry").iterdir()) == []
    _, out, _ = _run(capsys, "models", "list", "--cloud-config", str(config), "--json")
    assert json.loads(out)["models"] == []


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
