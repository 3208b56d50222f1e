"""The dashboard's HTTP endpoints on a real cloud service: auth, JSON shapes, staleness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig, StateConfig
from roadsense.cloud.dashboard.layout import network_layout
from roadsense.cloud.dashboard.server import demo_adjacency
from roadsense.core.timeutil import now_ms
from roadsense.proto.v1 import telemetry_pb2

from ..support.dashboard_support import (
    Client,
    dashboard_config,
    feed_sz_speeds,
    publish_report,
    wait_for_report,
)
from ..support.helpers import running_cloud, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def cloud(cloud_config: CloudConfig) -> Iterator[CloudService]:
    with running_cloud(dashboard_config(cloud_config)) as service:
        yield service


def _client(cloud: CloudService) -> Client:
    assert cloud.dashboard is not None
    return Client(cloud.dashboard.url)


def test_off_by_default(cloud_config: CloudConfig) -> None:
    assert not cloud_config.dashboard.enabled
    assert CloudService(cloud_config).dashboard is None


def test_everything_but_the_login_needs_a_session(cloud: CloudService) -> None:
    client = _client(cloud)
    status, headers, _ = client.request("/")
    assert status == 303
    assert headers["Location"] == "/login"
    for path in ("/api/city", "/api/network", "/api/segments/dash-main", "/api/events"):
        assert client.request(path)[0] == 401, path
    status, _, body = client.request("/login")
    assert status == 200
    assert b'name="token"' in body
    assert client.request("/static/app.js")[0] == 200


def test_unknown_token_is_refused(cloud: CloudService) -> None:
    client = _client(cloud)
    assert client.login("not-a-token") == 401
    assert client.request("/api/city")[0] == 401


def test_reader_token_logs_in_with_an_http_only_cookie(cloud: CloudService) -> None:
    client = _client(cloud)
    status, headers, _ = client.request("/login", {"token": "reader-token-for-the-dashboard-tests"})
    assert status == 303
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "reader-token" not in cookie
    assert headers["Location"] == "/"
    status, _, body = client.request("/")
    assert status == 200
    assert b"/static/app.js" in body
    assert client.request("/logout", {})[0] == 303
    assert client.request("/api/city")[0] == 401


def test_city_and_network_shapes(cloud: CloudService) -> None:
    client = _client(cloud)
    assert client.login() == 303
    feed_sz_speeds(cloud)
    publish_report(cloud.config.mqtt, segment="dash-ring", jam=1.0, seq=1)
    wait_for_report(cloud, 1)
    # Committed before counted: the ingest counts a batch once its write has returned.
    assert wait_until(lambda: cloud.ingest.stats().accepted >= 1)
    city = client.json("/api/city")
    assert city["congestion_index"] == 10.0
    assert city["segments_per_band"] == {"severe": 1}
    assert city["ingest"]["accepted"] >= 1
    assert city["dead_letters"] == {"total": 0, "by_code": {}}
    assert [len(city["index_history"])] == [1]
    assert {"devices_online", "devices_offline", "devices_revoked", "devices"} <= set(city)
    network = client.json("/api/network")
    by_id = {s["id"]: s for s in network["segments"]}
    assert by_id["dash-ring"]["state"]["level"] == 10.0
    assert by_id["dash-ring"]["state"]["cameras"] == ["dash-dev/cam1"]
    assert by_id["dash-main"]["state"] is None
    assert by_id["dash-main"]["geographic"]
    assert len(by_id["dash-main"]["shape"]) == 2
    # The SZ-taxi roads the forecaster knows are drawn from their adjacency.
    assert len(by_id) == 2 + 40
    assert network["links"]
    assert all(len(s["shape"]) >= 1 for s in network["segments"])


def test_a_stale_segment_is_flagged(cloud_config: CloudConfig) -> None:
    quick = cloud_config.model_copy(update={"state": StateConfig(stale_after_s=1.0)})
    with running_cloud(dashboard_config(quick)) as cloud:
        client = _client(cloud)
        assert client.login() == 303
        publish_report(cloud.config.mqtt, segment="dash-ring", jam=1.0, seq=2)
        wait_for_report(cloud, 2)
        # A report that arrives already older than the staleness limit is history only.
        publish_report(
            cloud.config.mqtt,
            segment="dash-main",
            jam=1.0,
            seq=3,
            capture_time_ms=now_ms() - 600_000,
        )
        wait_for_report(cloud, 3)
        assert wait_until(lambda: client.json("/api/segments/dash-ring")["state"]["stale"], 10.0)
        segment = client.json("/api/segments/dash-ring")
        assert segment["name"] == "Ring Rd"
        assert segment["history"][0]["level"] == 10.0
        assert client.json("/api/city")["stale_segments"] == 1
        late = client.json("/api/segments/dash-main")
        assert late["state"] is None
        assert [p["level"] for p in late["history"]] == [10.0]
        assert client.request("/api/segments/nowhere")[0] == 404


def test_the_segment_panel_shows_what_its_cameras_measured(cloud: CloudService) -> None:
    client = _client(cloud)
    assert client.login() == 303
    measured = telemetry_pb2.Measurements(
        samples=10, vehicles_mean=7.5, vehicles_max=9, stopped_mean=3.0, stopped_max=4,
        occupancy=0.25, level="heavy", rule="occupancy-stopped/1", confidence=0.7,
    )  # fmt: skip
    publish_report(cloud.config.mqtt, segment="dash-ring", jam=1.0, seq=7, measurements=measured)
    wait_for_report(cloud, 7)
    segment = client.json("/api/segments/dash-ring")
    state = segment["state"]
    assert (state["vehicles"], state["stopped"], state["measured_cameras"]) == (7.5, 3.0, 1)
    (camera,) = segment["cameras"]
    assert camera["camera"] == "dash-dev/cam1"
    assert (camera["vehicles"], camera["level"]) == (7.5, "heavy")
    (bin_,) = segment["measured"]
    assert (bin_["vehicles"], bin_["stopped"]) == (7.5, 3.0)


def test_segment_forecast(cloud: CloudService) -> None:
    client = _client(cloud)
    assert client.login() == 303
    road = feed_sz_speeds(cloud)
    segment = client.json(f"/api/segments/{road}")
    forecast = segment["forecast"]
    assert [p["horizon"] for p in forecast["points"]] == [1, 2, 3, 4]
    assert forecast["stale"] is False
    assert segment["observations"][-1]["unit"] == "km/h"
    assert client.json("/api/segments/dash-main")["forecast_unavailable"]


def test_layout_without_coordinates_is_schematic() -> None:
    links = demo_adjacency()
    ids = {s for link in links for s in link} | {"cam-a", "cam-b"}
    layout = network_layout(ids, {}, links)
    assert set(layout.shapes) == ids
    points = [p for line in layout.shapes.values() for p in line]
    assert len(set(points)) == len(points), "two segments drawn on the same spot"
