"""A throwaway PostgreSQL cluster for the tests: initdb in a temp folder, a socket there, no TCP.

PostgreSQL refuses to run as root (shared/PITFALLS.md #15), so as root the cluster belongs
to the ``postgres`` user that Debian's package creates. Durability is switched off: the
cluster lives as long as the test session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

PORT = 5432
"""Only names the socket file: the cluster listens on no TCP address."""
SETTINGS = (
    "-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c max_connections=200"
)


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

    def url(self, database: str = "postgres") -> str:
        """A libpq URL to ``database`` through the socket in ``root``."""
        return f"postgresql://postgres@/{database}?host={self.root}&port={PORT}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on this cluster (``start``, ``stop``, ``restart`` ...)."""
        _run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), *args])

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {PORT} -k {self.root} {SETTINGS}"
        self.pg_ctl("-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Stop the server at once (nothing in it is kept)."""
        self.pg_ctl("-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        """Stop the server and delete the cluster."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")


def start_postgres() -> RunningPostgres:
    """initdb a cluster in a new temp folder and start it; the caller removes it."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed; `make test` installs it")
    root = Path(tempfile.mkdtemp(prefix="roadsense-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster = RunningPostgres(root, bin_dir, as_user)
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
