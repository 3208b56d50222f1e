"""Start an MQTT broker on a free loopback port: Mosquitto, or an embedded one.

Used by ``roadsense demo`` and by the test harness. Mosquitto gets its own
config file in a private folder, with queue limits set deliberately
(Mosquitto's default drops messages for slow subscribers; docs/pitfalls.md
#2). Without Mosquitto on PATH, the pure-Python amqtt broker runs in a
thread, bound to 127.0.0.1 (its default is 0.0.0.0; docs/pitfalls.md #4). amqtt
speaks MQTT 3.1.1 only, and is a demo fallback, not a delivery-semantics one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from roadsense.core.errors import BrokerError
from roadsense.core.mqtt import QUEUE_AND_LOG_SETTINGS

logger = logging.getLogger(__name__)

MOSQUITTO_SETTINGS = (
    """\
allow_anonymous true
persistence true
persistence_location {data_dir}/
autosave_interval 1
"""
    + QUEUE_AND_LOG_SETTINGS
)


_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, and never handed out before by this process:
    the kernel may offer a port again before the process it was meant for has bound it
    (a CI run saw two servers of one test given the same port)."""
    with _HANDED_OUT_LOCK:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    """True once something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


@dataclass
class RunningBroker:
    """A broker this process started."""

    kind: Literal["mosquitto", "amqtt"]
    host: str
    port: int
    protocol: Literal["5", "3.1.1"]
    config_file: Path | None = None
    log_file: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stop: Any = field(default=None, repr=False)

    def stop(self) -> None:
        """Stop the broker."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._stop is not None:
            self._stop()

    def pause(self) -> None:
        """SIGSTOP (benchmarks): clients' connections wait until resume()."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads its config, certificates and CRL, keeping its clients."""
        if self._process is None:
            raise BrokerError("only a Mosquitto broker can be reloaded")
        self._process.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """Kill a Mosquitto broker at once (to test reconnection)."""
        if self._process is None:
            raise BrokerError("only a Mosquitto broker can be killed")
        self._process.kill()
        self._process.wait()

    def restart(self) -> None:
        """Start a killed or stopped Mosquitto again on the same port and config."""
        if self.config_file is None or self.log_file is None:
            raise BrokerError("only a Mosquitto broker can be restarted")
        self._process = _spawn_mosquitto(self.config_file, self.log_file, self.host, self.port)


def mosquitto_binary() -> str | None:
    """Path of the mosquitto executable, if installed."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)),
        None,
    )


def _spawn_mosquitto(config: Path, log: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    binary = mosquitto_binary()
    if binary is None:
        raise BrokerError("mosquitto is not installed")
    with log.open("ab") as log_handle:
        process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=log_handle, stderr=subprocess.STDOUT
        )
    if not wait_for_port(host, port, 10.0):
        process.kill()
        process.wait()
        tail = log.read_text(errors="replace")[-2000:]
        raise BrokerError(f"mosquitto did not start on {host}:{port}: {tail}")
    return process


def start_mosquitto(
    workdir: Path, port: int = 0, extra_config: str = "", listener_config: str = ""
) -> RunningBroker:
    """Run Mosquitto on 127.0.0.1 with its own config in ``workdir``.

    ``listener_config`` goes right under the listener line (TLS files,
    ``require_certificate``); ``extra_config`` at the end.
    """
    host = "127.0.0.1"
    port = port or free_port(host)
    data_dir = workdir / "mosquitto-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = MOSQUITTO_SETTINGS.format(data_dir=data_dir)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        settings += "user root\n"  # otherwise it drops to 'mosquitto' and cannot write here
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} {host}\n{listener_config}{settings}{extra_config}", encoding="utf-8"
    )
    log = workdir / "mosquitto.log"
    process = _spawn_mosquitto(config, log, host, port)
    return RunningBroker("mosquitto", host, port, "5", config, log, _process=process)


def run_mosquitto_config(config: Path, host: str, port: int) -> RunningBroker:
    """Run Mosquitto on a config file written elsewhere (e.g. by ``provision broker-config``).

    ``host``/``port`` are where the config listens; the log goes beside the config.
    """
    log = config.with_suffix(".log")
    process = _spawn_mosquitto(config, log, host, port)
    return RunningBroker("mosquitto", host, port, "5", config, log, _process=process)


def start_embedded(port: int = 0) -> RunningBroker:
    """Run the pure-Python amqtt broker in a background thread on 127.0.0.1."""
    try:
        from amqtt.broker import Broker
    except ImportError as err:
        raise BrokerError(
            "no MQTT broker: install Mosquitto, or the 'demo' extra for the embedded broker"
        ) from err
    host = "127.0.0.1"
    port = port or free_port(host)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    holder: dict[str, Any] = {}

    async def run() -> None:
        broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        holder["broker"] = broker
        await broker.start()

    def thread_main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(run())
        except Exception as err:  # reported to the caller below
            failure.append(err)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=thread_main, name="amqtt-broker", daemon=True)
    thread.start()
    # broker.start() returns once it listens; probing the port with a bare TCP
    # connection would make amqtt log an error for the empty session.
    if not started.wait(10.0) or failure:
        raise BrokerError(f"embedded broker did not start on {host}:{port}: {failure}")

    def stop() -> None:
        broker = holder.get("broker")
        if broker is not None:
            future = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(10.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)

    return RunningBroker("amqtt", host, port, "3.1.1", _stop=stop)


def start_broker(
    workdir: Path, prefer: Literal["auto", "mosquitto", "embedded"] = "auto"
) -> RunningBroker:
    """Mosquitto when it is installed (or asked for), else the embedded broker."""
    if prefer == "mosquitto" or (prefer == "auto" and mosquitto_binary()):
        return start_mosquitto(workdir)
    logger.info("mosquitto not found on PATH: using the embedded amqtt broker (MQTT 3.1.1)")
    return start_embedded()
