"""`roadsense cloud serve` and `roadsense edge run` as real processes, stopped by SIGTERM."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from roadsense.harness.broker import RunningBroker, free_port
from roadsense.proto.v1 import city_pb2, city_pb2_grpc, fleet_pb2, fleet_pb2_grpc

from .conftest import SAMPLE_VIDEO
from .support.helpers import stop_process

pytestmark = pytest.mark.integration


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "roadsense.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_services_run_from_config_files_and_stop_cleanly(
    mosquitto: RunningBroker, tmp_path: Path
) -> None:
    grpc_port = free_port()
    (tmp_path / "cloud.toml").write_text(
        f"[mqtt]\nport = {mosquitto.port}\n"
        f'[ingest]\nclient_id = "proc-cloud"\n'
        f"[grpc]\nport = {grpc_port}\n"
        f'[store]\npath = "state/city.sqlite"\n',
        encoding="utf-8",
    )
    (tmp_path / "edge.toml").write_text(
        f'device_id = "proc-edge"\n[mqtt]\nport = {mosquitto.port}\n'
        f"[reports]\nwindow = 2\ninterval_s = 0.3\n"
        f'[outbox]\npath = "outbox.sqlite"\n'
        f'[[cameras]]\nid = "cam1"\nsource = "{SAMPLE_VIDEO}"\nsegment_id = "proc-seg"\n'
        f"sample_hz = 8\nloop = true\n",
        encoding="utf-8",
    )
    cloud = _start(
        "--log-format", "json", "cloud", "serve", "--config", str(tmp_path / "cloud.toml")
    )
    edge = None
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        grpc.channel_ready_future(channel).result(timeout=20)
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        edge = _start("edge", "run", "--config", str(tmp_path / "edge.toml"))
        stub = city_pb2_grpc.CityServiceStub(channel)
        request = city_pb2.GetCityStateRequest(segment_ids=["proc-seg"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = stub.GetCityState(request, timeout=5)
            if state.segments and state.segments[0].reports >= 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no reports reached the cloud")
        edge_output = stop_process(edge)
        edge = None
        assert "Traceback" not in edge_output
        with sqlite3.connect(tmp_path / "outbox.sqlite") as outbox:
            next_seq, pending = outbox.execute(
                "SELECT (SELECT value FROM counters WHERE name = 'next_seq'), "
                "(SELECT COUNT(*) FROM outbox)"
            ).fetchone()
        assert pending == 0  # a clean stop waits for the broker's acknowledgements
        fleet = fleet_pb2_grpc.FleetServiceStub(channel)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            (segment,) = stub.GetCityState(request, timeout=5).segments
            devices = fleet.ListDevices(fleet_pb2.ListDevicesRequest(), timeout=5).devices
            offline = any(d.device_id == "proc-edge" and not d.online for d in devices)
            if segment.reports == next_seq - 1 and offline:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"cloud has {segment.reports} of {next_seq - 1} reports, offline={offline}")
        channel.close()
    finally:
        if edge is not None:
            edge.kill()
        cloud_output = stop_process(cloud)
    assert "Traceback" not in cloud_output
    entries = [json.loads(line) for line in cloud_output.splitlines() if line.strip()]
    assert entries, "the cloud logged nothing"
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    assert any(entry["message"] == "cloud service stopped" for entry in entries)

    # Everything the edge numbered reached the store exactly once.
    with sqlite3.connect(tmp_path / "state" / "city.sqlite") as store:
        seqs = [
            row[0]
            for row in store.execute(
                "SELECT seq FROM reports WHERE device_id = 'proc-edge' ORDER BY seq"
            )
        ]
    assert seqs == list(range(1, next_seq))
