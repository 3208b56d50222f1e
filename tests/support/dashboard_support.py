"""What the dashboard tests share: a cloud with the dashboard on, a reader token, HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from typing import Any

from roadsense.cloud.api.auth import AuthConfig, TokenConfig, hash_token
from roadsense.cloud.app import CloudService
from roadsense.cloud.city.segments import SegmentConfig
from roadsense.cloud.config import CloudConfig, DashboardConfig, GrpcConfig
from roadsense.cloud.forecast.feeds import ObservationRecord
from roadsense.core.mqtt import MqttConfig
from roadsense.core.paho_client import MqttPublisher
from roadsense.core.timeutil import now_ms
from roadsense.models.forecast.series import load_series
from roadsense.models.shipped import SZ_SPEEDS
from roadsense.proto import REPORT_SCHEMA_VERSION
from roadsense.proto.v1 import telemetry_pb2

from .factories import report
from .helpers import wait_until

READER_TOKEN = "reader-token-for-the-dashboard-tests"
ADMIN_TOKEN = "admin-token-for-the-dashboard-tests"
INTERVAL_MS = 15 * 60_000


def dashboard_config(base: CloudConfig) -> CloudConfig:
    """``base`` with the dashboard on a free port, reader and admin tokens, two segments."""
    auth = AuthConfig(
        tokens=[
            TokenConfig(name="wall", role="reader", sha256=hash_token(READER_TOKEN)),
            TokenConfig(name="ops", role="admin", sha256=hash_token(ADMIN_TOKEN)),
        ]
    )
    return base.model_copy(
        update={
            "grpc": GrpcConfig(host="127.0.0.1", port=0, grace_s=1.0, drain_s=0, auth=auth),
            "dashboard": DashboardConfig(enabled=True, host="127.0.0.1", port=0),
            "segments": [
                SegmentConfig(
                    id="dash-main",
                    name="Main St northbound",
                    road_class="primary",
                    length_m=800,
                    coordinates=[(22.54, 114.05), (22.55, 114.06)],
                ),
                SegmentConfig(id="dash-ring", name="Ring Rd", road_class="motorway"),
            ],
        }
    )


class Client:
    """An HTTP client that keeps cookies and does not follow redirects."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.cookies = CookieJar()

        class _NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )

    def request(
        self, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self._opener.open(self.base_url + path, data=data, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def json(self, path: str) -> Any:
        status, _, body = self.request(path)
        assert status == 200, (path, status, body[:200])
        return json.loads(body)

    def login(self, token: str = READER_TOKEN) -> int:
        status, _, _ = self.request("/login", {"token": token})
        return status


def publish_report(
    mqtt: MqttConfig,
    *,
    segment: str,
    jam: float,
    seq: int,
    capture_time_ms: int | None = None,
    measurements: telemetry_pb2.Measurements | None = None,
) -> None:
    """One congestion report over the real broker (probability ``jam`` of 'jammed'; with
    ``measurements``, a measuring device's report of schema version 2)."""
    publisher = MqttPublisher(mqtt, client_id=f"dash-dev-{seq}")
    publisher.start()
    assert publisher.wait_connected(10.0)
    message = report(
        device="dash-dev",
        seq=seq,
        segment=segment,
        probabilities=[1.0 - jam, 0, 0, 0, jam],
        capture_time_ms=capture_time_ms,
    )
    if measurements is not None:
        message.schema_version = REPORT_SCHEMA_VERSION
        message.measurements.CopyFrom(measurements)
    publisher.publish("roadsense/v1/dash-dev/cam1/congestion", message.SerializeToString())
    publisher.stop()


def wait_for_report(cloud: CloudService, seq: int) -> None:
    assert wait_until(lambda: ("dash-dev", seq) in cloud.store.report_keys())


def feed_sz_speeds(cloud: CloudService, rows: int = 16) -> str:
    """The newest ``rows`` SZ-taxi intervals as observations ending now; forecast them.

    Each observation lies in the last minute of its interval, so the newest input is
    one to sixteen minutes old whenever the test runs: well inside the forecast's
    stale limit (30 min). At an interval's start it was up to 30 min old, and a test
    begun just before a quarter hour saw its forecast turn stale half-way through.
    """
    series = load_series(SZ_SPEEDS)
    last = now_ms() // INTERVAL_MS * INTERVAL_MS - 60_000
    records = [
        ObservationRecord(segment, last - (rows - 1 - r) * INTERVAL_MS, float(v), "km/h", "test")
        for r in range(rows)
        for segment, v in zip(series.segment_ids, series.values[200 + r], strict=True)
        if v > 0
    ]
    cloud.store.add_observations(records, now_ms())
    assert cloud.forecasts is not None
    assert cloud.forecasts.run_once() > 0
    return series.segment_ids[0]
