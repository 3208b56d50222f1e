"""docs/provisioning.md's walkthrough, run as written, as root: the broker starts.

Mosquitto started as root drops to its 'mosquitto' user before it reads the
ACL and TLS files and writes its persistence; the walkthrough must give a
broker that starts, takes a device over mutual TLS, and keeps its state
across a restart. The shell block is taken from docs/provisioning.md itself, so the
two cannot drift apart.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from roadsense.core.config import load_config
from roadsense.core.mqtt import MqttConfig, TlsConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.edge.config import EdgeConfig
from roadsense.harness.broker import free_port, wait_for_port
from roadsense.proto.topics import status_topic

from ..conftest import REPO
from ..support.helpers import roadsense_cli, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the walkthrough's failure was as root"),
]


def _doc_block(page: str, heading: str, index: int) -> str:
    section = (REPO / page).read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1]
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return blocks[index]


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Reachable by the broker's user, as a fleet folder under /srv or /etc would be.
    folder = Path(tempfile.mkdtemp(prefix="roadsense-readme-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def _start_broker_the_readme_way(workdir: Path, script: str) -> int:
    log = (workdir / "walkthrough.log").open("ab")
    done = subprocess.run(
        ["bash", "-e", "-c", f"{script}\necho $! > {workdir}/mosquitto.pid\n"],
        cwd=workdir,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        check=False,
    )
    assert done.returncode == 0, (workdir / "walkthrough.log").read_text()
    return int((workdir / "mosquitto.pid").read_text())


def _uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, flags=re.MULTILINE)[1])  # type: ignore[index]


def _cloud(fleet: Path, port: int) -> MqttConfig:
    return MqttConfig(
        host="127.0.0.1",
        port=port,
        reconnect_max_s=1,
        tls=TlsConfig(
            ca_file=fleet / "ca" / "ca.pem",
            cert_file=fleet / "servers" / "roadsense-cloud.pem",
            key_file=fleet / "servers" / "roadsense-cloud.key",
        ),
    )


def _retained_status(fleet: Path, port: int) -> list[bytes]:
    seen: list[bytes] = []
    cloud = MqttPublisher(_cloud(fleet, port), client_id="roadsense-cloud")
    cloud.subscribe(status_topic("jetson-0001"), lambda topic, payload: seen.append(payload))
    cloud.start()
    try:
        assert cloud.wait_connected(10)
        wait_until(lambda: bool(seen), 5.0)
    finally:
        cloud.stop()
    return seen


def test_the_readme_walkthrough_gives_a_broker_that_starts_and_keeps_its_state(
    workdir: Path,
) -> None:
    mosquitto = pwd.getpwnam("mosquitto")
    port = free_port()
    setup = _doc_block("docs/provisioning.md", "From an empty folder to a broker", 0)
    setup = setup.replace("8883", str(port))
    pid = _start_broker_the_readme_way(workdir, setup)
    fleet = workdir / "fleet"
    try:
        assert wait_for_port("127.0.0.1", port, 10), (workdir / "walkthrough.log").read_text()
        assert _uid_of(pid) == mosquitto.pw_uid  # it dropped root, and still runs
        passphrase = (fleet / "ca-passphrase").read_text().strip()
        bundle = subprocess.run(
            ["roadsense", "provision", "bundle", "jetson-0001", "--manifest", "fleet.toml"],
            cwd=fleet,
            env={**_env(), "ROADSENSE_CA_PASSPHRASE": passphrase},
            capture_output=True,
            text=True,
            check=False,
        )
        assert bundle.returncode == 0, bundle.stderr
        with tarfile.open(fleet / "bundles" / "jetson-0001.tar.gz") as tar:
            tar.extractall(workdir / "device", filter="data")
        edge_file = workdir / "device" / "jetson-0001" / "edge.toml"
        edge = load_config(EdgeConfig, edge_file).resolved(edge_file.parent)
        device = MqttPublisher(edge.mqtt, client_id=edge.device_id)
        acked: list[str] = []
        device.start()
        try:
            assert device.wait_connected(10), (workdir / "walkthrough.log").read_text()
            topic = status_topic("jetson-0001")
            device.publish(topic, b"online", retain=True, on_ack=lambda: acked.append("ok"))
            assert wait_until(lambda: acked == ["ok"])
        finally:
            device.stop()
        assert _retained_status(fleet, port) == [b"online"]
        os.kill(pid, signal.SIGTERM)  # Mosquitto saves its state on the way out
        assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10.0)
        saved = fleet / "broker" / "data" / "mosquitto.db"
        assert saved.exists()
        assert saved.stat().st_uid == mosquitto.pw_uid
        pid = _start_broker_the_readme_way(
            workdir, "cd fleet\nmosquitto -c broker/mosquitto.conf &"
        )
        assert wait_for_port("127.0.0.1", port, 10)
        assert _retained_status(fleet, port) == [b"online"]  # it came back from the saved state
        log = (workdir / "walkthrough.log").read_text()
        assert "Error" not in log
        assert "Unable" not in log
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def test_a_broker_folder_its_user_cannot_reach_fails_at_once_naming_the_folder(
    workdir: Path,
) -> None:
    private = workdir / "private"
    private.mkdir(mode=0o700)
    fleet = private / "fleet"
    env = {"ROADSENSE_CA_PASSPHRASE": "a passphrase of the right length"}
    for args in (["init-ca"], ["server-cert", "broker", "--host", "127.0.0.1"]):
        done = roadsense_cli("provision", *args, "--dir", str(fleet), env=env)
        assert done.returncode == 0, done.stderr
    done = roadsense_cli(
        "provision", "broker-config", "--dir", str(fleet), "--out", str(fleet / "broker")
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "the broker runs as user 'mosquitto'" in done.stderr
    assert f"{private} is not searchable by that user" in done.stderr
