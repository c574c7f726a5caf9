"""The analysis states a person must be able to see, produced by the real server.

Here metrics are slow (1-2 s each) and prices move every 0.5 s, so a run's basis moves under it:
the page must show it restarting because prices moved, then failing once restarts run out, and
a switch to another holding mid-run must show the old run cancelled. Health warnings are
checked with the System report stubbed (its HTTP answer and the dashboard socket's ``system``
frames), since their limits are the server's own settings.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Page, Route, WebSocketRoute, expect

from support.dashboard_page import RECORDER, open_dashboard, open_session
from support.service_process import SCREENSHOTS, ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"MARKETPULSE_METRIC_DELAY": "1-2", "MARKETPULSE_MARKET_INTERVAL": "0.5"}


def recorded(page: Page) -> dict[str, Any]:
    seen: dict[str, Any] = page.evaluate("window.__seen")
    return seen


def test_restarts_because_prices_moved_then_fails_visibly(
    page: Page, server: ServerProcess
) -> None:
    open_dashboard(page, server)
    page.evaluate(RECORDER)
    open_session(page, "AAPL:100, MSFT:75")
    page.get_by_test_id("holding-AAPL").click()
    state = page.get_by_test_id("analysis-state")
    expect(state).to_have_attribute("data-state", "restarted", timeout=30_000)
    expect(state).to_have_text("restarted: prices moved")
    expect(page.get_by_test_id("analysis-note")).to_contain_text("Prices moved")
    page.screenshot(path=str(SCREENSHOTS / "07-restarted.png"), full_page=True)
    expect(state).to_have_attribute("data-state", "failed", timeout=60_000)
    expect(page.get_by_test_id("analysis-note")).to_contain_text("unstable_basis")
    states = recorded(page)["states"]
    assert states[0] == "running", states
    assert "restarted" in states, states


def test_switching_holding_mid_run_shows_the_cancel(page: Page, server: ServerProcess) -> None:
    open_dashboard(page, server)
    page.evaluate(RECORDER)
    open_session(page, "AAPL:100, MSFT:75")
    state = page.get_by_test_id("analysis-state")
    page.get_by_test_id("holding-AAPL").click()
    expect(state).to_have_attribute("data-state", "running")
    page.get_by_test_id("holding-MSFT").click()
    expect(page.get_by_test_id("analysis-ticker")).to_have_text("MSFT")
    expect(state).to_have_attribute("data-state", "running")
    states = recorded(page)["states"]
    assert "cancelled" in states, states
    page.get_by_test_id("analysis-cancel").click()
    expect(state).to_have_attribute("data-state", "cancelled")
    expect(page.get_by_test_id("analysis-note")).to_contain_text("Cancelled")


def test_health_warnings_show_in_system_and_in_the_feed(page: Page, server: ServerProcess) -> None:
    warning = {
        "type": "health_warning",
        "kind": "loop_lag",
        "subject": "event_loop",
        "value": 412.0,
        "limit": 250.0,
        "unit": "ms",
        "message": "loop lag of event_loop is 412.0 ms, above the limit of 250 ms",
        "timestamp": "2026-01-02T03:04:05.000Z",
    }

    def with_warning(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["health_warnings"] = [warning]
        route.fulfill(response=response, body=json.dumps(body))

    def socket_with_warning(ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()

        def to_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "system":
                frame["health_warnings"] = [warning]
            ws.send(json.dumps(frame))

        server_side.on_message(to_page)  # the page's own messages still go through untouched

    page.route("**/api/system", with_warning)
    page.route_web_socket("**/ws/dashboard", socket_with_warning)
    open_dashboard(page, server)
    expect(page.get_by_test_id("health-warning")).to_contain_text("loop lag of event_loop")
    expect(page.get_by_test_id("feed-health")).to_have_count(1)
    expect(page.get_by_test_id("feed-health")).to_contain_text("health: loop lag")
