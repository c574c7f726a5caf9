"""The dashboard in real headless Chromium against the real server (see conftest.py).

Each scenario is one the issue names: no console errors on load, a live price changing on
screen, an alert created in the form that fires into the feed, a portfolio analysis showing its
five metrics arriving, reconnecting by itself after a server restart, and a readable message for
bad input in every form. Waits are Playwright's (they wait for a DOM condition), never sleeps.
"""

from __future__ import annotations

import json
import re
import shutil
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Route, WebSocketRoute, expect

from support.dashboard_page import (
    PHONE,
    RECORDER,
    add_symbol,
    create_alert,
    open_dashboard,
    open_session,
    shot,
)
from support.service_process import ROOT, SCREENSHOTS, Console, ServerProcess

pytestmark = pytest.mark.e2e

METRICS = ("portfolio_risk", "concentration", "correlation", "momentum", "allocation_score")


def test_page_loads_without_console_errors(
    page: Page, server: ServerProcess, console: Console
) -> None:
    open_dashboard(page, server)
    expect(page.get_by_test_id("conn-alerts")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("sys-redis")).to_have_text(re.compile(r"^ok"))
    expect(page.get_by_test_id("sys-providers")).to_contain_text("simulated")
    assert console.errors == []
    shot(page, "01-loaded")
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways at phone width by {overflow}px"
    shot(page, "01-loaded-phone")
    assert console.errors == []


def test_live_price_changes_on_screen(page: Page, server: ServerProcess, console: Console) -> None:
    """Driven by the dashboard socket: the price moves three times while the page asks for the
    quote over HTTP at most once (when the card is made)."""
    quote_requests: list[str] = []
    page.on(
        "request", lambda r: quote_requests.append(r.url) if "/api/quotes/AAPL" in r.url else None
    )
    open_dashboard(page, server)
    expect(page.get_by_test_id("conn-dashboard")).to_have_attribute("data-state", "live")
    add_symbol(page, "AAPL")
    price = page.get_by_test_id("price-AAPL")
    expect(price).to_have_text(re.compile(r"^\d[\d,]*\.\d\d$"))
    for _ in range(3):
        shown = price.inner_text()
        expect(price).not_to_have_text(shown, timeout=30_000)
    assert len(quote_requests) <= 1, quote_requests
    expect(page.get_by_test_id("source-AAPL")).to_contain_text("simulated")
    expect(page.get_by_test_id("market-AAPL")).to_have_text("–")  # a tick market: no calendar
    expect(page.get_by_test_id("chart-AAPL").locator("canvas")).to_have_count(1)
    expect(page.get_by_test_id("sys-clients")).to_contain_text(re.compile(r"dashboard [1-9]"))
    shot(page, "02-live-price")
    assert console.errors == []


def test_a_closed_market_says_when_it_opens(
    page: Page, server: ServerProcess, console: Console
) -> None:
    """The market fields of a live source, stubbed onto the simulated quotes of MSFT (over
    HTTP and on the dashboard socket): the card says "closed, opens <day> <time>"."""
    closed = {"market_open": False, "session_date": "2026-12-04",
              "next_open": "2026-12-07T14:30:00Z", "estimated": False}  # fmt: skip

    def http_closed(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, body=json.dumps(response.json() | closed))

    def socket_closed(ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()

        def to_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "quote" and frame.get("symbol") == "MSFT":
                frame |= closed
            ws.send(json.dumps(frame))

        server_side.on_message(to_page)

    page.route("**/api/quotes/MSFT", http_closed)
    page.route_web_socket("**/ws/dashboard", socket_closed)
    open_dashboard(page, server)
    add_symbol(page, "MSFT")
    market = page.get_by_test_id("market-MSFT")
    expect(market).to_have_text(re.compile(r"^closed, opens (Mon|Tue)"))  # the browser's zone
    expect(market).to_have_attribute("title", "session of 2026-12-04")
    expect(page.get_by_test_id("symbol-MSFT")).to_have_attribute("data-market", "closed")
    shot(page, "02-closed-market")
    assert console.errors == []


def test_a_symbol_added_in_the_form_can_be_removed(
    page: Page, server: ServerProcess, console: Console
) -> None:
    open_dashboard(page, server)
    add_symbol(page, "IBM")
    expect(page.get_by_test_id("price-IBM")).to_have_text(re.compile(r"^\d"))
    page.get_by_test_id("remove-IBM").click()
    expect(page.get_by_test_id("symbol-IBM")).to_have_count(0)
    expect(page.get_by_test_id("symbol-msg")).to_have_text("IBM removed.")
    listed = httpx.get(server.base_url + "/api/symbols", timeout=10)
    assert listed.status_code == 200 and "IBM" not in listed.text  # the service forgot it too
    assert console.errors == []


def test_the_session_token_kept_in_the_page_survives_a_reload(
    page: Page, server: ServerProcess, console: Console
) -> None:
    open_dashboard(page, server)
    open_session(page, "AAPL:10")
    session_id = page.get_by_test_id("session-id").inner_text()
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("session-view")).to_be_visible()
    expect(page.get_by_test_id("session-id")).to_have_text(session_id)
    expect(page.get_by_test_id("conn-session")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("total-value")).not_to_have_text("–")
    assert console.errors == []


def test_alert_from_the_form_appears_fires_and_shows_in_the_feed(
    page: Page, server: ServerProcess, console: Console
) -> None:
    open_dashboard(page, server)
    add_symbol(page, "MSFT")
    expect(page.get_by_test_id("conn-alerts")).to_have_attribute("data-state", "live")
    create_alert(page, "MSFT", "1")  # true on the first observation: fires
    row = page.locator('[data-testid="alert-row"][data-symbol="MSFT"]')
    expect(row).to_have_count(1)
    fired = page.locator('[data-testid="feed-alert"][data-symbol="MSFT"]')
    expect(fired.first).to_be_visible(timeout=30_000)
    expect(page.locator('[data-testid="history-row"][data-symbol="MSFT"]').first).to_be_visible()
    shot(page, "03-alert-fired")
    row.get_by_test_id("alert-delete").click()
    expect(row).to_have_count(0)
    assert console.errors == []


def test_portfolio_analysis_shows_the_five_metrics_arriving(
    page: Page, server: ServerProcess, console: Console
) -> None:
    open_dashboard(page, server)
    page.evaluate(RECORDER)
    for symbol in ("AAPL", "MSFT", "GOOGL"):
        add_symbol(page, symbol)
    create_alert(page, "GOOGL", "1")  # fires at once: the feed in the README screenshot
    expect(page.locator('[data-testid="feed-alert"][data-symbol="GOOGL"]').first).to_be_visible()
    open_session(page, "AAPL:100, MSFT:75, GOOGL:50")
    total = page.get_by_test_id("total-value")
    first_total = total.inner_text()
    expect(total).not_to_have_text(first_total, timeout=30_000)  # revaluations stream in
    page.get_by_test_id("holding-AAPL").click()
    expect(page.get_by_test_id("analysis-state")).to_have_attribute(
        "data-state", "complete", timeout=60_000
    )
    for name in METRICS:
        expect(page.get_by_test_id(f"metric-{name}")).to_have_attribute("data-state", "done")
    seen: dict[str, Any] = page.evaluate("window.__seen")
    assert "running" in seen["states"], seen
    assert seen["states"][-1] == "complete", seen
    assert sorted(set(seen["metrics"])) == sorted(METRICS), seen
    shot(page, "04-analysis-complete")
    shutil.copyfile(SCREENSHOTS / "04-analysis-complete.png", ROOT / "artifacts" / "readme.png")
    page.set_viewport_size(PHONE)  # the full page (cards, charts, session) still fits a phone
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways at phone width by {overflow}px"
    shot(page, "04-analysis-phone")
    assert console.errors == []


def test_bad_input_in_every_form_shows_a_message(page: Page, server: ServerProcess) -> None:
    open_dashboard(page, server)
    symbol_msg = page.get_by_test_id("symbol-msg")
    page.get_by_test_id("symbol-add").click()
    expect(symbol_msg).to_contain_text("Enter a symbol")
    page.get_by_test_id("symbol-input").fill("no way!")
    page.get_by_test_id("symbol-add").click()
    expect(symbol_msg).to_contain_text("not a valid symbol")

    alert_msg = page.get_by_test_id("alert-msg")
    page.get_by_test_id("alert-create").click()
    expect(alert_msg).to_contain_text("Enter the symbol")
    page.get_by_test_id("alert-symbol").fill("AAPL")
    page.get_by_test_id("alert-threshold").fill("lots")
    page.get_by_test_id("alert-create").click()
    expect(alert_msg).to_contain_text("not a number")
    page.get_by_test_id("alert-threshold").fill("-5")  # the server's validation answers this one
    page.get_by_test_id("alert-create").click()
    expect(alert_msg).to_contain_text("Alert not created")
    expect(alert_msg).to_have_attribute("data-kind", "error")

    session_msg = page.get_by_test_id("session-msg")
    page.get_by_test_id("session-create").click()
    expect(session_msg).to_contain_text("Enter at least one holding")
    page.get_by_test_id("session-holdings").fill("AAPL:-3")
    page.get_by_test_id("session-create").click()
    expect(session_msg).to_contain_text("positive number")
    page.get_by_test_id("session-holdings").fill("AAPL:10")
    page.get_by_test_id("session-id-input").fill("e2e-duplicate")
    page.get_by_test_id("session-create").click()
    expect(page.get_by_test_id("session-view")).to_be_visible()
    page.get_by_test_id("session-create").click()  # the same id again: the server says 409
    expect(session_msg).to_contain_text("Session not opened")
    shot(page, "05-bad-input")


def test_page_reconnects_by_itself_after_a_server_restart(
    page: Page, server: ServerProcess, console: Console
) -> None:
    open_dashboard(page, server)
    add_symbol(page, "AAPL")
    open_session(page, "AAPL:10, MSFT:5")
    conns = [page.get_by_test_id(f"conn-{name}") for name in ("dashboard", "alerts", "session")]
    for conn in conns:
        expect(conn).to_have_attribute("data-state", "live")
    server.stop()
    for conn in conns:
        expect(conn).to_have_attribute("data-state", "reconnecting")
    shot(page, "06-reconnecting")
    server.start()
    for conn in conns:
        expect(conn).to_have_attribute("data-state", "live", timeout=30_000)
    price = page.get_by_test_id("price-AAPL")
    before = price.inner_text()
    expect(price).not_to_have_text(before, timeout=30_000)
    page.get_by_test_id("holding-MSFT").click()
    expect(page.get_by_test_id("analysis-state")).to_have_attribute(
        "data-state", "complete", timeout=60_000
    )
    shot(page, "06-reconnected")
    # the browser logs the refused connections while the server was down; nothing else
    unexpected = [
        e for e in console.errors if "ERR_CONNECTION_REFUSED" not in e and "WebSocket" not in e
    ]
    assert unexpected == []
