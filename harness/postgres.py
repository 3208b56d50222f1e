"""Start a throwaway PostgreSQL cluster: initdb in a temp folder, a socket there, no TCP.

Used by the test harness and by ``roadsense bench ingest --store postgresql``; never for
data that must last (durability is switched off). PostgreSQL refuses to run as root
(docs/pitfalls.md #15), so as root the cluster belongs to the ``postgres`` user that
Debian's package creates. The server binaries are Debian's (``/usr/lib/postgresql/N/bin``)
or the first ``initdb`` on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from roadsense.core.errors import StoreError

PORT = 5432
"""Only names the socket file: the cluster listens on no TCP address."""
TEST_SETTINGS = "-c fsync=off -c full_page_writes=off"
"""For tests: a commit survives the server's crash (synchronous_commit stays on: it is in the
kernel when the commit returns), not the machine's."""
BENCH_SETTINGS = ""
"""For benchmarks: the server's defaults, durable as in production."""


def postgres_bin() -> Path | None:
    """The folder of the newest installed PostgreSQL's server binaries, if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@dataclass
class RunningPostgres:
    """A cluster this process started; databases are created per test."""

    root: Path
    bin_dir: Path
    as_user: list[str]
    settings: str = TEST_SETTINGS

    def url(self, database: str = "postgres") -> str:
        """A libpq URL to ``database`` through the socket in ``root``."""
        return f"postgresql://postgres@/{database}?host={self.root}&port={PORT}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg  # the 'cloud' extra

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on this cluster (``start``, ``stop``, ``restart`` ...)."""
        _run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), *args])

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {PORT} -k {self.root} -c listen_addresses='' -c max_connections=200 "
        options += self.settings
        self.pg_ctl("-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Stop the server at once (nothing in it is kept)."""
        self.pg_ctl("-m", "immediate", "-w", "stop")

    def cpu_seconds(self) -> float:
        """CPU time the server's processes have used so far, ended backends included (Linux)."""
        ticks = os.sysconf("SC_CLK_TCK")
        postmaster = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == postmaster:
                total += sum(int(f) for f in fields[11:15])  # own and reaped children's
            elif ppid == postmaster:
                total += int(fields[11]) + int(fields[12])
        return total / ticks

    def remove(self) -> None:
        """Stop the server and delete the cluster."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise StoreError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}".strip())


def start_postgres(settings: str = TEST_SETTINGS) -> RunningPostgres:
    """initdb a cluster in a new temp folder and start it; the caller removes it."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise StoreError(
            "PostgreSQL's server binaries are not installed (Debian/Ubuntu: apt-get install "
            "postgresql; `make test` installs them)"
        )
    root = Path(tempfile.mkdtemp(prefix="roadsense-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster = RunningPostgres(root, bin_dir, as_user, settings)
    _run(
        [
            *as_user,
            str(bin_dir / "initdb"),
            "-D",
            str(root / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]
    )
    cluster.start()
    return cluster
