"""The fleet manifest, device bundles and the `roadsense provision` CLI (exit codes, --json)."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from roadsense.cli.main import main
from roadsense.core.config import load_config
from roadsense.core.errors import ConfigError
from roadsense.core.paho_client import MqttPublisher
from roadsense.edge.config import EdgeConfig
from roadsense.harness.broker import free_port, run_mosquitto_config
from roadsense.provisioning.ca import PASSPHRASE_ENV
from roadsense.provisioning.manifest import edge_config_toml, load_manifest, manifest_from_csv

from ..support.helpers import wait_until

PASSPHRASE = "fleet passphrase for tests"

MANIFEST = """\
[fleet]
city = "test-city"
broker = {{ host = "127.0.0.1", port = {port} }}
segments = ["seg-a", "seg-b"]
install_dir = "/opt/roadsense"

[[devices]]
id = "dev-1"
site = "Main St / 5th"
hardware = "jetson-orin-nx"
location = {{ lat = 22.54, lon = 114.05 }}

[[devices.cameras]]
id = "cam1"
source = "rtsp://192.0.2.10:554/stream1"
segment_id = "seg-a"
direction = "northbound"
roi = [0.1, 0.2, 0.8, 0.7]
blur = [[0.0, 0.0, 1.0, 0.2]]

[[devices.cameras]]
id = "cam2"
source = "0"
segment_id = "seg-b"
"""


def _write_manifest(folder: Path, port: int = 8883, text: str = MANIFEST) -> Path:
    path = folder / "fleet.toml"
    path.write_text(text.format(port=port))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('id = "cam2"', 'id = "cam1"'), "duplicate camera ids: cam1"),
        (('segment_id = "seg-b"', 'segment_id = "seg-x"'), "unknown segments: dev-1/cam2 -> seg-x"),
        (('"rtsp://192.0.2.10:554/stream1"', '"ftp://192.0.2.10/x"'), "URL scheme 'ftp'"),
        (('"rtsp://192.0.2.10:554/stream1"', '"rtsp:///stream1"'), "URL has no host"),
        (('"rtsp://192.0.2.10:554/stream1"', '"rtsp://192.0.2.10:99999/s"'), "bad port"),
        (('"rtsp://192.0.2.10:554/stream1"', '"cam.mp4"'), "not a camera URL"),
        (('id = "dev-1"', 'id = "roadsense-cloud"'), "reserved"),
        (('id = "dev-1"', 'id = "dev/1"'), "devices[0].id"),
        (("roi = [0.1, 0.2, 0.8, 0.7]", "roi = [0.5, 0.2, 0.8, 0.7]"), "inside the frame"),
        (('hardware = "jetson-orin-nx"', 'hardware = "raspberry-pi"'), "devices[0].hardware"),
    ],
)
def test_manifest_mistakes_are_named(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = _write_manifest(tmp_path, text=MANIFEST.replace(*change))
    with pytest.raises(ConfigError) as raised:
        load_manifest(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_duplicate_devices_are_refused(tmp_path: Path) -> None:
    second = MANIFEST[MANIFEST.index("[[devices]]") :]
    path = _write_manifest(tmp_path, text=MANIFEST + "\n" + second)
    with pytest.raises(ConfigError, match="duplicate device ids: dev-1"):
        load_manifest(path)


def test_csv_import_makes_a_valid_manifest_and_refuses_bad_rows(tmp_path: Path) -> None:
    rows = [
        "device_id,site,lat,lon,hardware,camera_id,source,segment_id,direction,roi",
        'dev-1,"Main St, 5th",22.5,114.0,jetson-orin-nano,cam1,rtsp://192.0.2.1/a,seg-a,nb,'
        "0 0 1 0.5",
        "dev-1,Main St,,,,cam2,1,seg-a,sb,",
        "dev-2,Harbour Rd,,,,cam1,https://192.0.2.2/b.m3u8,seg-b,,",
    ]
    good = tmp_path / "fleet.csv"
    good.write_text("\n".join(rows) + "\n")
    text = manifest_from_csv(good, "csv-city", "mqtt.example.org")
    (tmp_path / "fleet.toml").write_text(text)
    manifest = load_manifest(tmp_path / "fleet.toml")
    assert [(d.id, d.site, [c.id for c in d.cameras]) for d in manifest.devices] == [
        ("dev-1", "Main St, 5th", ["cam1", "cam2"]),
        ("dev-2", "Harbour Rd", ["cam1"]),
    ]
    assert manifest.devices[0].cameras[0].roi == (0.0, 0.0, 1.0, 0.5)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([rows[0], rows[1].replace("rtsp://192.0.2.1/a", "rtsp//x")]) + "\n")
    with pytest.raises(ConfigError, match=r"bad\.csv.*not a camera URL"):
        manifest_from_csv(bad, "csv-city", "mqtt.example.org")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["provision", *argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


@pytest.fixture
def fleet_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    folder = tmp_path / "fleet"
    assert main(["provision", "init-ca", "--dir", str(folder)]) == 0
    return folder


def _members(bundle: Path) -> dict[str, tuple[int, bytes]]:
    with tarfile.open(bundle) as tar:
        return {
            m.name: (m.mode, tar.extractfile(m).read())  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def test_bundle_is_idempotent_and_keeps_keys_private(
    fleet_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = _write_manifest(tmp_path)
    args = ("bundle", "dev-1", "--dir", str(fleet_dir), "--manifest", str(manifest))
    code, first = _cli(capsys, *args)
    assert (code, first["ok"], first["issued"]) == (0, True, True)
    bundle = Path(first["bundle"])
    original = bundle.read_bytes()
    # A re-run needs no CA passphrase: it issues nothing and writes the same bytes.
    monkeypatch.delenv(PASSPHRASE_ENV)
    code, again = _cli(capsys, *args)
    assert (code, again["issued"], again["serial"]) == (0, False, first["serial"])
    assert bundle.read_bytes() == original
    members = _members(bundle)
    assert sorted(members) == [
        f"dev-1/{n}"
        for n in (
            "ca.pem",
            "device.key",
            "device.pem",
            "edge.toml",
            "model-signing.pub",
            "roadsense-edge.service",
        )
    ]
    assert members["dev-1/device.key"][0] == 0o600
    # The key devices verify published models with, made by init-ca.
    public = (fleet_dir / "ca" / "model-signing.pub").read_bytes()
    assert members["dev-1/model-signing.pub"] == (0o644, public)
    for path in (
        bundle,
        fleet_dir / "devices" / "dev-1" / "device.key",
        fleet_dir / "ca" / "ca.key",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (
        b"ExecStart=/usr/bin/env roadsense edge run --config /opt/roadsense/edge.toml"
        in (members["dev-1/roadsense-edge.service"][1])
    )
    # --reissue rotates explicitly (and needs the CA again).
    code, failed = _cli(capsys, *args, "--reissue")
    assert (code, failed["ok"]) == (1, False)
    assert PASSPHRASE_ENV in failed["error"]
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    code, rotated = _cli(capsys, *args, "--reissue")
    assert (code, rotated["issued"]) == (0, True)
    assert rotated["serial"] != first["serial"]
    assert _members(bundle)["dev-1/device.key"][1] != members["dev-1/device.key"][1]


def test_a_revoked_certificate_is_never_bundled(
    fleet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _write_manifest(tmp_path)
    args = ("bundle", "dev-1", "--dir", str(fleet_dir), "--manifest", str(manifest))
    code, first = _cli(capsys, *args)
    assert code == 0
    code, revoked = _cli(capsys, "revoke", "dev-1", "--dir", str(fleet_dir), "--reason", "lost")
    assert (code, revoked["revoked_serials"]) == (0, [first["serial"]])
    code, refused = _cli(capsys, *args)
    assert code == 1
    assert "revoked" in refused["error"]
    code, status = _cli(capsys, "status", "--dir", str(fleet_dir), "--manifest", str(manifest))
    assert status["devices"][0]["device"] == "dev-1"
    assert status["devices"][0]["certificate"] == "revoked"


def test_the_ca_is_never_overwritten_and_needs_its_passphrase(
    fleet_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = (fleet_dir / "ca" / "ca.key").read_bytes()
    code, result = _cli(capsys, "init-ca", "--dir", str(fleet_dir))
    assert (code, result["ok"]) == (1, False)
    assert "refusing to overwrite" in result["error"]
    assert (fleet_dir / "ca" / "ca.key").read_bytes() == key
    monkeypatch.setenv(PASSPHRASE_ENV, "a wrong passphrase")
    code, result = _cli(
        capsys, "server-cert", "broker", "--host", "127.0.0.1", "--dir", str(fleet_dir)
    )
    assert code == 1
    assert "wrong CA passphrase" in result["error"]
    monkeypatch.setenv(PASSPHRASE_ENV, "short")
    assert main(["provision", "init-ca", "--dir", str(fleet_dir.parent / "other")]) == 1
    assert "12+ characters" in capsys.readouterr().err


def test_tokens_are_stored_hashed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "city.sqlite"
    code, result = _cli(capsys, "token", "--store", str(store), "--device", "dev-1", "--ttl", "10m")
    assert (code, result["uses"], result["device"]) == (0, 1, "dev-1")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("city.sqlite*"))
    assert result["token"].encode() not in raw
    from roadsense.cloud.api.auth import hash_token

    assert hash_token(result["token"]).encode() in raw


@pytest.mark.integration
def test_a_bundled_device_publishes_over_mtls(
    fleet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    manifest = _write_manifest(tmp_path, port=port)
    d = str(fleet_dir)
    assert _cli(capsys, "server-cert", "broker", "--host", "127.0.0.1", "--dir", d)[0] == 0
    extra = ["--bind", "127.0.0.1", "--port", str(port)]
    if os.geteuid() == 0:  # pytest's tmp folders are private to root
        extra += ["--broker-user", "root"]
    code, broker_files = _cli(
        capsys, "broker-config", "--dir", d, "--out", str(tmp_path / "b"), *extra
    )
    assert code == 0
    config = Path(broker_files["config_file"])
    code, bundled = _cli(capsys, "bundle", "dev-1", "--dir", d, "--manifest", str(manifest))
    assert code == 0
    device_root = tmp_path / "device"
    with tarfile.open(bundled["bundle"]) as tar:
        tar.extractall(device_root, filter="data")
    assert stat.S_IMODE((device_root / "dev-1" / "device.key").stat().st_mode) == 0o600
    edge_file = device_root / "dev-1" / "edge.toml"
    edge = load_config(EdgeConfig, edge_file).resolved(edge_file.parent)
    assert [c.id for c in edge.cameras] == ["cam1", "cam2"]
    # The manifest's region of interest reaches the device; no ROI means the whole frame.
    assert [c.roi for c in edge.cameras] == [(0.1, 0.2, 0.8, 0.7), None]
    assert [c.blur for c in edge.cameras] == [[(0.0, 0.0, 1.0, 0.2)], []]
    assert edge.privacy.allow_snapshots is False  # the fleet did not allow them
    # The device takes model updates, verified with the key its bundle carries.
    assert edge.models.public_key_file == device_root / "dev-1" / "model-signing.pub"
    assert edge.models.public_key_file.is_file()
    broker = run_mosquitto_config(config, "127.0.0.1", port)
    device = MqttPublisher(edge.mqtt, client_id=edge.device_id)
    acked: list[str] = []
    try:
        device.start()
        assert device.wait_connected(10.0)
        device.publish("roadsense/v1/dev-1/status", b"x", on_ack=lambda: acked.append("ok"))
        assert wait_until(lambda: acked == ["ok"])
    finally:
        device.stop()
        broker.stop()


def test_a_cameras_road_zone_and_counting_line_go_from_the_manifest_to_its_device(
    tmp_path: Path,
) -> None:
    measured = MANIFEST.replace(
        'segment_id = "seg-b"\n',
        'segment_id = "seg-b"\nsample_hz = 5.0\n'
        "zone = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]\n"
        "counting_line = [[0.0, 0.75], [1.0, 0.75]]\n",
    )
    manifest = load_manifest(_write_manifest(tmp_path, text=measured))
    config_file = tmp_path / "edge.toml"
    config_file.write_text(edge_config_toml(manifest, "dev-1"), encoding="utf-8")
    config = load_config(EdgeConfig, config_file)
    cam2 = next(c for c in config.cameras if c.id == "cam2")
    assert cam2.zone == [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]
    assert cam2.counting_line == [(0.0, 0.75), (1.0, 0.75)]
    cam1 = next(c for c in config.cameras if c.id == "cam1")
    # No zone: the measurement counts in the camera's region of interest.
    assert cam1.zone is None
    zone = cam1.measuring_zone()
    assert zone is not None
    corners = [v for point in zone for v in point]
    assert corners == pytest.approx([0.1, 0.2, 0.9, 0.2, 0.9, 0.9, 0.1, 0.9])
    bad = measured.replace("[[0.0, 0.75], [1.0, 0.75]]", "[[0.0, 0.75]]")
    with pytest.raises(ConfigError, match="a counting line is two points"):
        load_manifest(_write_manifest(tmp_path, text=bad))
