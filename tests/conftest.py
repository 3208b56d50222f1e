"""Shared fixtures: a real Mosquitto and a real PostgreSQL per session, cloud services on port 0,
tmp SQLite, and ``store_target``: each store test once per backend.

Every test also fails when an MQTT callback raised (paho would otherwise
swallow or log it) or when anything logged at ERROR, such as an exception in
a gRPC servicer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig, GrpcConfig, IngestConfig, StoreConfig
from roadsense.core import paho_client
from roadsense.core.mqtt import MqttConfig
from roadsense.harness.broker import RunningBroker, mosquitto_binary, start_mosquitto
from roadsense.harness.postgres import RunningPostgres, postgres_bin, start_postgres

from .support.helpers import running_cloud
from .support.stores import StoreTarget, postgres_target, sqlite_target

REPO = Path(__file__).resolve().parent.parent
SAMPLE_VIDEO = REPO / "edge" / "samples" / "highway_video03.avi"


@pytest.fixture(autouse=True)
def _fail_on_swallowed_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    paho_client.callback_errors.clear()
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not paho_client.callback_errors, f"MQTT callback raised: {paho_client.callback_errors}"
    assert not errors, "errors were logged: " + "; ".join(r.getMessage() for r in errors)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    """A real Mosquitto on a free 127.0.0.1 port with its own config."""
    if mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed; `make test` installs it")
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[RunningPostgres]:
    """A throwaway PostgreSQL cluster: initdb in a temp folder, a socket there, no TCP."""
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is not installed; `make test` installs it")
    cluster = start_postgres()
    yield cluster
    cluster.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    """An empty store database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_target(tmp_path)
    cluster: RunningPostgres = request.getfixturevalue("postgres")
    return postgres_target(cluster.create_database())


@pytest.fixture
def mqtt_config(mosquitto: RunningBroker) -> MqttConfig:
    return MqttConfig(
        host=mosquitto.host, port=mosquitto.port, session_expiry_s=300, reconnect_max_s=2
    )


@pytest.fixture
def cloud_config(
    mqtt_config: MqttConfig, tmp_path: Path, request: pytest.FixtureRequest
) -> CloudConfig:
    # A client id and share group per test: no test sees another's session.
    name = f"cloud-{abs(hash(request.node.nodeid)):x}"
    return CloudConfig(
        mqtt=mqtt_config,
        ingest=IngestConfig(client_id=name, shared_group=name),
        grpc=GrpcConfig(host="127.0.0.1", port=0, grace_s=1.0, drain_s=0),
        store=StoreConfig(path=tmp_path / "city.sqlite"),
    )


@pytest.fixture
def cloud(cloud_config: CloudConfig) -> Iterator[CloudService]:
    """A started cloud service: ingest connected, gRPC on a free port."""
    with running_cloud(cloud_config) as service:
        yield service
