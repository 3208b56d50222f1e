"""The CLI: every command documents itself."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from roadsense.cli.main import build_parser, main


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                found.append(((*path, name), sub, helps.get(name)))
                found.extend(_commands(sub, (*path, name)))
    return found


def test_every_command_has_help_text() -> None:
    commands = _commands(build_parser())
    names = {" ".join(path) for path, _, _ in commands}
    assert {
        "edge",
        "edge run",
        "edge models",
        "cloud",
        "cloud serve",
        "cloud token",
        "cloud snapshot",
        "cloud check",
        "demo",
        "bench",
        "bench edge",
        "bench ingest",
        "bench grpc",
        "bench forecast",
        "bench classifier",
        "forecast evaluate",
        "forecast replay",
        "forecast export",
        "models build-engine",
        "models evaluate",
        "train forecaster",
        "train congestion",
        "dataset",
        "dataset congestion",
        "dataset frames",
        "provision",
        "provision init-ca",
        "provision server-cert",
        "provision client-cert",
        "provision broker-config",
        "provision check-manifest",
        "provision import-csv",
        "provision bundle",
        "provision token",
        "provision enroll",
        "provision revoke",
        "provision status",
    } <= names
    for path, parser, summary in commands:
        assert summary, f"{' '.join(path)} has no help line"
        assert parser.description, f"{' '.join(path)} has no description"
        for action in parser._actions:
            if action.dest != "help" and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{' '.join(path)} {action.dest} has no help"


@pytest.mark.parametrize(
    "argv",
    [[], ["edge"], ["edge", "run"], ["cloud"], ["cloud", "serve"], ["demo"], ["bench", "edge"]],
)
def test_help_exits_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    assert "usage: roadsense" in capsys.readouterr().out


def test_missing_subcommand_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "roadsense.cli", "edge"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "required" in result.stderr
