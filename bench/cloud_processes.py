"""`roadsense cloud serve --role ...` as real processes on free ports, for benches and tests.

Each process gets its own TOML file (its own MQTT client id, one shared-subscription group
per city, its own gRPC and metrics ports) and runs the installed ``roadsense`` in a fresh
interpreter, so a SIGKILL kills exactly what production would lose.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from roadsense.harness.broker import free_port


@dataclass(frozen=True)
class CityProcesses:
    """What every process of one city shares: the broker, the store, the share group."""

    workdir: Path
    mqtt_port: int
    store_url: str
    group: str
    forecast: bool = False
    lock_poll_s: float = 1.0
    batch_size: int = 500


def _toml(city: CityProcesses, name: str, grpc_port: int, metrics_port: int) -> str:
    store = (
        f'url = "{city.store_url}"\ntimeout_s = 2\n'
        if "://" in city.store_url
        else f'path = "{city.store_url}"\n'
    )
    return (
        f'[mqtt]\nhost = "127.0.0.1"\nport = {city.mqtt_port}\nsession_expiry_s = 600\n'
        f"reconnect_max_s = 2\n"
        f'[ingest]\nclient_id = "{city.group}-{name}"\nshared_group = "{city.group}"\n'
        f"batch_size = {city.batch_size}\nqueue_size = 20000\n"
        f'[grpc]\nhost = "127.0.0.1"\nport = {grpc_port}\ngrace_s = 1\ndrain_s = 0\n'
        f"[store]\n{store}"
        f'[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = {metrics_port}\n'
        f"[classify]\nenabled = false\n"
        f"[forecast]\nenabled = {str(city.forecast).lower()}\n"
        f"poll_s = 1\nlock_poll_s = {city.lock_poll_s}\n"
    )


class CloudProcess:
    """One `roadsense cloud serve --role ROLE` subprocess; restartable with the same ids."""

    def __init__(self, city: CityProcesses, name: str, role: str) -> None:
        self.name = name
        self.role = role
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.config = city.workdir / f"{name}.toml"
        self.config.write_text(
            _toml(city, name, self.grpc_port, self.metrics_port), encoding="utf-8"
        )
        self.log = city.workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """Its gRPC address."""
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        """Start it (again, after a kill: same client id, so the broker's session resumes)."""
        command = [sys.executable, "-m", "roadsense.cli", "--log-format", "json", "cloud"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "serve", "--role", self.role, "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        """The running process's id."""
        assert self.process is not None, "not started"
        return self.process.pid

    def health(self, timeout_s: float = 2.0) -> int | None:
        """Its gRPC health status, or None when it does not answer."""
        try:
            with grpc.insecure_channel(self.address) as channel:
                status: int = (
                    health_pb2_grpc.HealthStub(channel)
                    .Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
                    .status
                )
                return status
        except grpc.RpcError:
            return None

    def metric(self, name: str) -> float | None:
        """One unlabelled figure of its /metrics (None: not there, or no answer)."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return None
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else None

    def subscribed(self) -> bool:
        """Whether its ingest holds the telemetry subscription now (its metrics say so)."""
        return self.metric("roadsense_cloud_ingest_connected") == 1.0

    def wait_ready(self, timeout_s: float = 60.0, *, subscribed: bool = True) -> None:
        """Until it serves health (and, with an ingest and ``subscribed``, holds its
        subscription)."""
        needs_broker = subscribed and self.role in ("ingest", "all")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.output()[-2000:]}")
            serving = self.health() == health_pb2.HealthCheckResponse.SERVING
            if serving and (not needs_broker or self.subscribed()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout_s} s: {self.output()[-2000:]}")

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL: nothing flushed, nothing said goodbye."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait; its exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def output(self) -> str:
        """What it logged so far."""
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
