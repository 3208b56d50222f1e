"""The example systemd units (docs/systemd/) run real `roadsense` commands, one per role."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from roadsense.cli.main import build_parser
from roadsense.cloud.app import ROLES

from .conftest import REPO

UNITS = REPO / "docs" / "systemd"
ROLE_OF_UNIT = {
    "roadsense-ingest@.service": "ingest",
    "roadsense-api@.service": "api",
    "roadsense-forecast.service": "forecast",
}


def _unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are cased
    unit.read_string(path.read_text(encoding="utf-8"))
    return unit


def test_there_is_one_unit_per_role_and_each_runs_its_role() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(ROLE_OF_UNIT)
    assert set(ROLE_OF_UNIT.values()) == set(ROLES) - {"all"}
    parser = build_parser()
    for name, role in ROLE_OF_UNIT.items():
        unit = _unit(UNITS / name)
        service = unit["Service"]
        assert service["Restart"] == "always"
        assert service["KillSignal"] == "SIGTERM"  # the graceful shutdown the cloud does
        assert unit["Install"]["WantedBy"] == "multi-user.target"
        argv = shlex.split(service["ExecStart"])
        assert Path(argv[0]).name == "roadsense"
        args = parser.parse_args(argv[1:])  # exits (fails the test) on an unknown flag
        assert (args.command, args.cloud_command, args.role) == ("cloud", "serve", role)
        assert args.log_format == "json"
        assert ("%i" in str(args.config)) == name.endswith("@.service")


def test_the_cloud_manual_shows_every_unit() -> None:
    manual = (REPO / "docs" / "cloud.md").read_text(encoding="utf-8")
    for name in ROLE_OF_UNIT:
        assert f"docs/systemd/{name}" in manual


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    roadsense = Path(sys.executable).with_name("roadsense")
    assert roadsense.is_file()
    for name in ROLE_OF_UNIT:
        # An instance of each template, running this checkout's roadsense.
        text = (UNITS / name).read_text(encoding="utf-8")
        local = tmp_path / name.replace("@.", "@1.")
        local.write_text(text.replace("/opt/roadsense/bin/roadsense", str(roadsense)), "utf-8")
        done = subprocess.run(
            ["systemd-analyze", "verify", str(local)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == "", done.stderr
