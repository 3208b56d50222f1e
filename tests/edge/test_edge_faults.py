"""The edge agent under faults: broker outage, SIGKILL, tiny bounds; real broker and video."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig
from roadsense.core.mqtt import MqttConfig
from roadsense.edge.config import CameraConfig, EdgeConfig, OutboxConfig, ReportConfig
from roadsense.edge.runner import build_agent
from roadsense.harness.broker import start_mosquitto

from ..conftest import REPO, SAMPLE_VIDEO
from ..support.helpers import wait_until
from ..support.netproxy import FlakyLink

pytestmark = pytest.mark.integration
ARTIFACTS = REPO / "test-artifacts"


def _edge_toml(path: Path, device: str, port: int) -> None:
    cameras = "".join(
        f'[[cameras]]\nid = "{cam}"\nsource = "{SAMPLE_VIDEO}"\nsegment_id = "{device}-{cam}"\n'
        f"sample_hz = 8\nloop = true\n"
        for cam in ("cam1", "cam2")
    )
    path.write_text(
        f'device_id = "{device}"\nshutdown_grace_s = 20\nhealth_interval_s = 1\n'
        f"[mqtt]\nport = {port}\nreconnect_max_s = 2\n"
        f"[reports]\nwindow = 2\ninterval_s = 0.3\n"
        f'[outbox]\npath = "outbox.sqlite"\n{cameras}',
        encoding="utf-8",
    )


def _start_agent(config: Path) -> subprocess.Popen[bytes]:
    # The agent's log goes beside its config: a failure names the file to read.
    with (config.parent / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "roadsense.cli", "edge", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _log_tail(log: Path, lines: int = 40) -> str:
    """The end of an agent's log, for the message of a failed assertion."""
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _stored(cloud: CloudService, device: str) -> list[int]:
    return [seq for d, seq in cloud.store.report_keys() if d == device]


def test_outage_and_sigkill_lose_nothing_and_duplicate_nothing(
    tmp_path: Path, cloud_config: CloudConfig
) -> None:
    broker = start_mosquitto(tmp_path / "broker")
    mqtt = cloud_config.mqtt.model_copy(update={"port": broker.port})
    ingest = cloud_config.ingest.model_copy(update={"shared_group": ""})
    cloud = CloudService(cloud_config.model_copy(update={"mqtt": mqtt, "ingest": ingest}))
    cloud.start()
    device = "fault-1"
    config = tmp_path / "edge.toml"
    _edge_toml(config, device, broker.port)
    agent = _start_agent(config)
    try:
        assert cloud.ingest.wait_connected(10.0)
        assert wait_until(lambda: len(_stored(cloud, device)) >= 5, 60.0)
        # The broker goes away for ~10 s; the agent keeps measuring into its outbox.
        broker.stop()
        before_outage = len(_stored(cloud, device))
        time.sleep(10)
        broker.restart()
        assert wait_until(lambda: len(_stored(cloud, device)) > before_outage + 10, 60.0)
        # A crash at an arbitrary moment, then a restart on the same outbox.
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        after_kill = len(_stored(cloud, device))
        agent = _start_agent(config)
        assert wait_until(lambda: len(_stored(cloud, device)) > after_kill + 5, 60.0)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(60) == 0
        with sqlite3.connect(tmp_path / "outbox.sqlite") as outbox:
            counters = dict(outbox.execute("SELECT name, value FROM counters").fetchall())
            pending = outbox.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        assigned = counters["next_seq"] - 1
        assert pending == 0, _log_tail(config.parent / "agent.log")
        assert counters["dropped"] == 0
        everything = set(range(1, assigned + 1))
        assert wait_until(lambda: set(_stored(cloud, device)) == everything, 30.0)
        stored = _stored(cloud, device)
        assert len(stored) == len(set(stored)) == assigned
        # Per camera, sequence numbers follow capture time.
        for camera in ("cam1", "cam2"):
            with sqlite3.connect(cloud_config.store.path) as store:
                times = [
                    t
                    for (t,) in store.execute(
                        "SELECT capture_time_ms FROM reports WHERE device_id = ? AND camera_id = ? "
                        "ORDER BY seq",
                        [device, camera],
                    )
                ]
            assert times == sorted(times)
            assert len(times) > 5
        counts = {
            "assigned": assigned,
            "delivered": len(set(stored)),
            "duplicates_ignored_by_cloud": cloud.ingest.stats().duplicates,
            "dropped": counters["dropped"],
            "reports_during_outage_and_kill": assigned - before_outage,
        }
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "edge-fault-counts.json").write_text(json.dumps(counts) + "\n")
        print(json.dumps(counts))
    finally:
        if agent.poll() is None:
            agent.kill()
        cloud.stop()
        broker.stop()


def test_outbox_bounds_drop_oldest_while_the_uplink_is_down(
    cloud: CloudService, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    link = FlakyLink(mqtt_config.host, mqtt_config.port)
    link.cut()
    config = EdgeConfig(
        device_id="bounded-1",
        mqtt=mqtt_config.model_copy(update={"port": link.port}),
        reports=ReportConfig(window=1, interval_s=0.1),
        outbox=OutboxConfig(path=tmp_path / "outbox.sqlite", max_rows=5),
        cameras=[
            CameraConfig(
                id="cam1", source=str(SAMPLE_VIDEO), segment_id="bounded", loop=True, sample_hz=10
            )
        ],
    )
    agent = build_agent(config)
    try:
        agent.start()
        assert wait_until(lambda: agent.stats.reports_created >= 12)
        agent.stop_capture()
        created = agent.stats.reports_created
        kept = [row.seq for row in agent.outbox.pending(0, 100)]
        assert kept == list(range(created - 4, created + 1))  # the newest five
        health = agent.health()
        assert health.outbox_dropped == created - 5
        assert health.outbox_pending == 5
        link.restore()
        assert agent.flush(20.0)
        assert wait_until(
            lambda: sorted(s for d, s in cloud.store.report_keys() if d == "bounded-1") == kept
        )
    finally:
        agent.stop()
        link.close()
