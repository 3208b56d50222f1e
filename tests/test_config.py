"""Configuration: strict TOML, one clear line per mistake, every field described."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from roadsense.cloud.config import CloudConfig
from roadsense.core.config import ConfigModel, load_config
from roadsense.core.errors import ConfigError
from roadsense.edge.capture.config import OpenCvCaptureConfig, PyAvCaptureConfig
from roadsense.edge.config import EdgeConfig, OutboxConfig
from roadsense.models.footage.config import FootageConfig

REPO = Path(__file__).resolve().parent.parent

MINIMAL_EDGE = """
device_id = "dev-1"
[[cameras]]
id = "cam1"
source = "clip.avi"
segment_id = "seg-1"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sample_configs_are_valid() -> None:
    edge = load_config(EdgeConfig, REPO / "edge" / "sample-config.toml")
    cloud = load_config(CloudConfig, REPO / "cloud" / "sample-config.toml")
    assert edge.device_id == "jetson-0001"
    assert [c.id for c in edge.cameras] == ["cam1", "cam2"]
    assert cloud.ingest.shared_group == ""
    assert [s.id for s in cloud.segments] == [c.segment_id for c in edge.cameras]
    assert cloud.grpc.auth.tokens[0].role == "reader"


def test_the_cloud_never_refuses_what_the_edge_outbox_may_still_send() -> None:
    cloud = CloudConfig()
    assert cloud.ingest.max_late_s >= OutboxConfig().max_age_s
    sample = load_config(CloudConfig, REPO / "cloud" / "sample-config.toml")
    assert sample.ingest.max_late_s == cloud.ingest.max_late_s == 14 * 24 * 3600


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = load_config(EdgeConfig, _write(tmp_path, MINIMAL_EDGE)).resolved(tmp_path)
    assert config.cameras[0].source == str(tmp_path / "clip.avi")
    assert config.outbox.path == tmp_path / "outbox.sqlite"


def test_both_services_resolve_their_broker_files_against_the_config_folder(
    tmp_path: Path,
) -> None:
    mqtt = (
        '[mqtt]\npassword_file = "secret"\n'
        '[mqtt.tls]\nca_file = "ca.pem"\ncert_file = "me.pem"\nkey_file = "/abs/me.key"\n'
    )
    edge = load_config(EdgeConfig, _write(tmp_path, MINIMAL_EDGE + mqtt)).resolved(tmp_path)
    cloud_file = tmp_path / "cloud.toml"
    cloud_file.write_text('[store]\npath = "city.sqlite"\n' + mqtt, encoding="utf-8")
    cloud = load_config(CloudConfig, cloud_file).resolved(tmp_path)
    for resolved in (edge.mqtt, cloud.mqtt):
        assert resolved.password_file == tmp_path / "secret"
        assert resolved.tls is not None
        assert resolved.tls.ca_file == tmp_path / "ca.pem"
        assert resolved.tls.cert_file == tmp_path / "me.pem"
        assert resolved.tls.key_file == Path("/abs/me.key")  # absolute paths stay


def test_model_update_settings_resolve_and_bad_ones_are_named(tmp_path: Path) -> None:
    models = (
        '[models]\npublic_key_file = "model-signing.pub"\ngrpc_address = "cloud.example:50051"\n'
        '[models.grpc_tls]\nca_file = "ca.pem"\n'
    )
    config = load_config(EdgeConfig, _write(tmp_path, MINIMAL_EDGE + models)).resolved(tmp_path)
    assert config.models.public_key_file == tmp_path / "model-signing.pub"
    assert config.models.folder == tmp_path / "model-releases"
    assert config.models.grpc_tls is not None
    assert config.models.grpc_tls.ca_file == tmp_path / "ca.pem"
    assert load_config(EdgeConfig, _write(tmp_path, MINIMAL_EDGE)).models.public_key_file is None
    for setting, expected in (
        ('grpc_address = "cloud"', r"models\.grpc_address: .*'cloud' is not host:port"),
        ('grpc_address = "cloud:99999"', r"models\.grpc_address: .*not host:port"),
        ("latency_factor = 0.5", r"models\.latency_factor: .*greater than or equal to 1"),
        ("min_free_bytes = -1", r"models\.min_free_bytes: .*greater than or equal to 0"),
        ("self_test_frames = 0", r"models\.self_test_frames: "),
    ):
        with pytest.raises(ConfigError, match=expected):
            load_config(EdgeConfig, _write(tmp_path, f"{MINIMAL_EDGE}[models]\n{setting}\n"))


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path, MINIMAL_EDGE.replace('device_id = "dev-1"', 'device_id = "dev-1"\nfoo = 1')
    )
    with pytest.raises(ConfigError) as info:
        load_config(EdgeConfig, path)
    assert str(info.value) == f"{path}: foo: unknown key"


def test_bad_value_names_key_and_expectation(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL_EDGE + "[mqtt]\nport = 70000\n")
    with pytest.raises(ConfigError) as info:
        load_config(EdgeConfig, path)
    message = str(info.value)
    assert message.startswith(f"{path}: mqtt.port: ")
    assert "less than or equal to 65535" in message
    assert "70000" in message
    assert "\n" not in message


def test_nested_list_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL_EDGE.replace('id = "cam1"', 'id = "cam/1"'))
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.id: .*letters, digits"):
        load_config(EdgeConfig, path)


def test_duplicate_cameras_rejected(tmp_path: Path) -> None:
    text = MINIMAL_EDGE + '[[cameras]]\nid = "cam1"\nsource = "0"\nsegment_id = "s2"\n'
    with pytest.raises(ConfigError, match="duplicate camera ids: cam1"):
        load_config(EdgeConfig, _write(tmp_path, text))


def test_camera_capture_is_discriminated_on_its_type(tmp_path: Path) -> None:
    text = MINIMAL_EDGE + 'classify_source = "sub.avi"\n[cameras.capture]\ntype = "pyav"\n'
    config = load_config(EdgeConfig, _write(tmp_path, text + 'keyframes = "always"\n'))
    camera = config.resolved(tmp_path).cameras[0]
    assert isinstance(camera.capture, PyAvCaptureConfig)
    assert camera.capture.keyframes == "always"
    assert camera.classify_source == str(tmp_path / "sub.avi")  # relative to the file
    assert load_config(EdgeConfig, _write(tmp_path, MINIMAL_EDGE)).cameras[0].capture.type == "auto"
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.capture"):
        load_config(
            EdgeConfig, _write(tmp_path, MINIMAL_EDGE + '[cameras.capture]\ntype = "vlc"\n')
        )
    opencv = MINIMAL_EDGE + '[cameras.capture]\ntype = "opencv"\n'
    with pytest.raises(ConfigError, match="keyframes"):  # a PyAV option
        load_config(EdgeConfig, _write(tmp_path, opencv + 'keyframes = "auto"\n'))
    capture = load_config(EdgeConfig, _write(tmp_path, opencv + "threads = 2\n")).cameras[0].capture
    assert isinstance(capture, OpenCvCaptureConfig)
    assert capture.threads == 2


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(EdgeConfig, tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(EdgeConfig, _write(tmp_path, "device_id = "))


def _models(root: type[BaseModel]) -> set[type[BaseModel]]:
    seen = {root}
    for field in root.model_fields.values():
        for candidate in getattr(field.annotation, "__args__", (field.annotation,)):
            inner = getattr(candidate, "__args__", (candidate,))
            for kind in inner:
                if isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in seen:
                    seen |= _models(kind)
    return seen


@pytest.mark.parametrize("root", [EdgeConfig, CloudConfig, FootageConfig])
def test_every_config_field_has_a_description(root: type[ConfigModel]) -> None:
    models = _models(root)
    assert len(models) > 3
    undocumented = [
        f"{model.__name__}.{name}"
        for model in models
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert not undocumented


def test_cli_reports_config_error_in_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL_EDGE + '[mqtt]\nprotocol = "4"\n')
    result = subprocess.run(
        [sys.executable, "-m", "roadsense.cli", "edge", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"roadsense: configuration error: {path}: mqtt.protocol:")
    assert "Traceback" not in result.stderr


def test_missing_model_is_one_clear_line(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL_EDGE + '[classifier]\nmodel = "models/none.onnx"\n')
    result = subprocess.run(
        [sys.executable, "-m", "roadsense.cli", "edge", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"roadsense: error: {tmp_path / 'models' / 'none.onnx'}: model file not found"
    )


def test_duplicate_segments_rejected(tmp_path: Path) -> None:
    text = '[[segments]]\nid = "a"\nname = "A"\n[[segments]]\nid = "a"\nname = "A again"\n'
    with pytest.raises(ConfigError, match="duplicate segment ids: a"):
        load_config(CloudConfig, _write(tmp_path, text))


def test_a_camera_maps_to_one_segment_only(tmp_path: Path) -> None:
    text = (
        '[[segments]]\nid = "a"\nname = "A"\ncameras = ["d/c"]\n'
        '[[segments]]\nid = "b"\nname = "B"\ncameras = ["d/c"]\n'
    )
    with pytest.raises(ConfigError, match="cameras mapped to more than one segment: d/c"):
        load_config(CloudConfig, _write(tmp_path, text))
