"""`roadsense demo --json`: the whole flow in one command, with either broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_json_reports_every_published_report_ingested(broker: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "roadsense.cli",
            "demo",
            "--duration",
            "8",
            "--json",
            "--broker",
            broker,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["broker"] == {"mosquitto": "mosquitto", "embedded": "amqtt"}[broker]
    assert figures["reports_published"] > 0
    assert figures["dashboard_url"].startswith("http://127.0.0.1:")
    assert f"dashboard: {figures['dashboard_url']} (log in with the reader token" in (
        result.stdout + result.stderr
    )
    assert figures["reports_ingested"] == figures["reports_published"]
    assert figures["reports_stored_unique"] == figures["reports_published"]
    assert figures["reports_created"] == figures["reports_published"]
    assert figures["reports_confirmed"] == figures["reports_created"]  # end to end
    assert figures["frames_classified"] > figures["reports_published"]
    assert figures["segments"] == 2
    assert figures["measured_segments"] == 2  # the devices measure
    assert figures["vehicles_in_view"] > 0
    assert figures["grpc_ok"] is True
    assert figures["dead_letters"] == 0
    assert figures["model_placeholder"] is False  # the trained CNN ships
    assert figures["feed_error"] is None
    assert figures["feed_observations_accepted"] > 0
    assert figures["forecast_segments"] == 40  # the replayed SZ-taxi roads
    assert " ERROR " not in result.stderr, result.stderr[-3000:]
