"""Operating the cloud: Prometheus metrics, `roadsense cloud check`, `roadsense cloud token`."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import grpc
import pytest

from roadsense.cloud.api.auth import hash_token
from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig
from roadsense.core.metrics import MetricsConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.proto.v1 import city_pb2, city_pb2_grpc

from ..support.factories import report
from ..support.helpers import roadsense_cli, wait_until

pytestmark = pytest.mark.integration


def _metric(text: str, pattern: str) -> float:
    match = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"no {pattern} in metrics"
    return float(match.group(1))


def test_metrics_cover_ingest_dead_letters_lag_and_rpcs(cloud_config: CloudConfig) -> None:
    config = cloud_config.model_copy(update={"metrics": MetricsConfig(enabled=True, port=0)})
    service = CloudService(config)
    service.start()
    try:
        assert service.ingest.wait_connected(10.0)
        publisher = MqttPublisher(config.mqtt, client_id="metrics-dev")
        publisher.start()
        assert publisher.wait_connected(10.0)
        for seq in range(1, 6):
            message = report(device="metrics-dev", seq=seq).SerializeToString()
            publisher.publish("roadsense/v1/metrics-dev/cam1/congestion", message)
        publisher.publish("roadsense/v1/metrics-dev/cam1/congestion", b"\x07garbage")
        # These six, not retained statuses of earlier tests on the shared broker.
        assert wait_until(
            lambda: service.ingest.stats().accepted + service.ingest.stats().rejected >= 6
        )
        publisher.stop()
        with grpc.insecure_channel(service.address) as channel:
            city_pb2_grpc.CityServiceStub(channel).GetCityState(
                city_pb2.GetCityStateRequest(), timeout=5
            )
        assert service._metrics_server is not None
        url = f"http://127.0.0.1:{service._metrics_server.port}/metrics"
        with urllib.request.urlopen(url) as page:
            text = page.read().decode()
    finally:
        service.stop()
    assert _metric(text, "roadsense_cloud_ingest_accepted_total") == 5
    assert _metric(text, r'roadsense_cloud_dead_letters_total\{code="bad_protobuf"\}') == 1
    assert _metric(text, "roadsense_cloud_capture_to_store_seconds_count") == 5
    assert (
        _metric(
            text,
            r'roadsense_cloud_rpc_seconds_count\{code="OK",'
            r'method="/roadsense.v1.CityService/GetCityState"\}',
        )
        == 1
    )
    assert _metric(text, "roadsense_cloud_ingest_queue_depth") == 0
    assert _metric(text, "roadsense_cloud_watchers") == 0


def test_cloud_check_reads_config_and_store(cloud: CloudService, tmp_path: Path) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text(f'[store]\npath = "{cloud.config.store.path}"\n', encoding="utf-8")
    result = roadsense_cli("cloud", "check", "--config", str(config), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    facts = json.loads(result.stdout)
    assert facts["ok"] is True
    assert facts["migrations_pending"] == []
    assert "open to anyone" in facts["warning"]

    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[store]\npath = "missing-dir/city.sqlite"\n'
        '[grpc.tls]\ncert_file = "nope.pem"\nkey_file = "nope.key"\n',
        encoding="utf-8",
    )
    result = roadsense_cli("cloud", "check", "--config", str(broken), "--json")
    assert result.returncode == 1
    problems = json.loads(result.stdout)["problems"]
    assert f"gRPC TLS file not found: {tmp_path / 'nope.pem'}" in problems
    assert f"store folder does not exist: {tmp_path / 'missing-dir'}" in problems

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database" * 100)
    (tmp_path / "garbage.toml").write_text(f'[store]\npath = "{garbage}"\n', encoding="utf-8")
    result = roadsense_cli("cloud", "check", "--config", str(tmp_path / "garbage.toml"), "--json")
    assert result.returncode == 1
    assert "cannot be read" in json.loads(result.stdout)["problems"][0]


def test_cloud_token_prints_a_token_and_its_hash() -> None:
    result = roadsense_cli("cloud", "token", "--name", "wall-screen", "--role", "reader")
    assert result.returncode == 0
    token = re.search(r"not stored anywhere\): (\S+)", result.stdout)
    digest = re.search(r'sha256 = "([0-9a-f]{64})"', result.stdout)
    assert token
    assert digest
    assert hash_token(token.group(1)) == digest.group(1)
    assert 'role = "reader"' in result.stdout
