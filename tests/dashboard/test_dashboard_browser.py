"""The dashboard end to end in headless Chromium (Debian's, driven by Playwright).

A real cloud service with the dashboard on, a real Mosquitto, reports published
over MQTT; the page must change without a reload. Screenshots land in
test-artifacts/. No browser is downloaded: `make test` installs Debian's
chromium, and these tests fail (never skip) without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from roadsense.cloud.app import CloudService
from roadsense.cloud.config import CloudConfig
from roadsense.cloud.rollout.records import Rollout, RolloutDevice, RolloutEvent
from roadsense.core.mqtt import MqttConfig
from roadsense.core.timeutil import now_ms

from ..support.dashboard_support import (
    READER_TOKEN,
    dashboard_config,
    feed_sz_speeds,
    publish_report,
    wait_for_report,
)
from ..support.helpers import running_cloud, wait_until
from .test_dashboard_evidence import evidence_agent, evidence_config

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; `make test` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture
def cloud(cloud_config: CloudConfig) -> Iterator[CloudService]:
    with running_cloud(dashboard_config(cloud_config)) as service:
        yield service


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def _url(cloud: CloudService) -> str:
    assert cloud.dashboard is not None
    return cloud.dashboard.url


def _log_in(page: Page, cloud: CloudService, token: str = READER_TOKEN) -> None:
    page.goto(_url(cloud))
    page.fill("#token", token)
    page.click("button[type=submit]")


def test_page_refuses_without_a_login(page: Page, cloud: CloudService) -> None:
    page.goto(_url(cloud))
    expect(page).to_have_url(_url(cloud) + "login")
    expect(page.locator("#network")).to_have_count(0)
    _log_in(page, cloud, token="wrong")
    expect(page.locator(".error")).to_have_text("Unknown token.")


def test_live_updates_and_forecast_chart(page: Page, cloud: CloudService) -> None:
    road = feed_sz_speeds(cloud)
    publish_report(cloud.config.mqtt, segment="dash-ring", jam=0.0, seq=1)
    wait_for_report(cloud, 1)
    _log_in(page, cloud)
    expect(page).to_have_url(_url(cloud))
    ring = page.locator('#network .segment[data-segment="dash-ring"]')
    expect(ring).to_have_attribute("data-level", "0.0")
    expect(ring.locator("text")).to_have_text("0")
    free_colour = ring.get_attribute("data-colour")
    expect(page.locator("body")).to_have_attribute("data-live", "true")
    expect(page.locator("#connection")).to_be_hidden()

    # A jam reported over MQTT reaches the page through the event stream.
    publish_report(cloud.config.mqtt, segment="dash-ring", jam=1.0, seq=2)
    expect(ring).to_have_attribute("data-level", "10.0", timeout=15_000)
    expect(ring.locator("text")).to_have_text("10")
    assert ring.get_attribute("data-colour") != free_colour
    expect(page.locator("#city-index")).to_have_text("10.0", timeout=15_000)

    # A road of the forecaster: its chart shows the four horizons.
    page.locator(f'#network .segment[data-segment="{road}"]').click()
    chart = page.locator("#forecast-chart")
    expect(chart).to_have_attribute("data-stale", "false")
    expect(chart.locator("circle.horizon")).to_have_count(4)
    expect(chart.locator("polyline.forecast-line")).to_have_count(1)
    expect(page.locator("#segment-facts")).to_contain_text(road)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


def test_a_measuring_cameras_evidence_still_on_request(
    page: Page, cloud_config: CloudConfig, mqtt_config: MqttConfig, tmp_path: Path
) -> None:
    with running_cloud(evidence_config(cloud_config)) as service:
        agent = evidence_agent(mqtt_config, tmp_path, allow=True, measure=True)
        try:
            assert wait_until(lambda: bool(service.store.camera_measurements("dash-main")), 30.0)
            _log_in(page, service)
            page.locator('#network .segment[data-segment="dash-main"]').click()
            expect(page.locator("#segment-facts")).to_contain_text("ev-1/cam1")
            page.locator("#evidence-cameras button", has_text="ev-1/cam1").click()
            expect(page.locator("#evidence-status")).to_contain_text("vehicles", timeout=20_000)
            expect(page.locator("#evidence")).to_be_visible()
            expect(page.locator("#evidence-status")).to_contain_text("vehicles in its region")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-evidence.png"), full_page=True)
        finally:
            agent.stop()


def test_connection_lost_banner(page: Page, cloud: CloudService) -> None:
    _log_in(page, cloud)
    expect(page.locator("body")).to_have_attribute("data-live", "true")
    assert cloud.dashboard is not None
    cloud.dashboard.stop()
    expect(page.locator("#connection")).to_be_visible(timeout=15_000)
    expect(page.locator("#connection")).to_have_text("Connection lost — reconnecting…")


def test_device_list_shows_the_rollout(page: Page, cloud: CloudService) -> None:
    publish_report(cloud.config.mqtt, segment="dash-ring", jam=0.0, seq=1)
    wait_for_report(cloud, 1)
    now = now_ms()
    reason = "canary outside thresholds: inference p95 80.0 ms is 10.0x the control's 8.0 ms"
    rollout = Rollout("r-dash", "2.0", "failed", 50.0, 0, now, now, "ops", now, reason)
    device = RolloutDevice(
        "r-dash", "dash-dev", 0, "1.0", "1.0", "1.0", "rolled_back", "", "q1", now, 1, now
    )
    cloud.store.add_rollout(rollout, [device], RolloutEvent("r-dash", now, "ops", "", "canary", ""))
    _log_in(page, cloud)
    item = page.locator("#devices li", has_text="dash-dev")
    expect(item).to_contain_text("model 1.0")
    expect(item.locator(".rollout")).to_have_text(" — rollout canary: rolled back")
    expect(page.locator("#rollout")).to_have_text(f"Rollout r-dash of 2.0: failed — {reason}")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-rollout.png"), full_page=True)
