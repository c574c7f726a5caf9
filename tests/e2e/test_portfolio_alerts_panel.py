"""The dashboard's portfolio-alerts panel in real headless Chromium against the real server:
it appears with a session, creates an alert from its form, shows the alert firing (the fire
reaches the page over the session's socket) and its state, refuses bad input with a readable
message, and deletes the alert. Waits are Playwright's (a DOM condition), never sleeps."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from support.dashboard_page import open_dashboard, open_session, shot
from support.service_process import Console, ServerProcess

pytestmark = pytest.mark.e2e


def test_a_portfolio_alert_is_created_fires_and_is_deleted(
    page: Page, server: ServerProcess, console: Console
) -> None:
    open_dashboard(page, server)
    panel = page.get_by_test_id("portfolio-alerts")
    expect(panel).to_be_hidden()  # no session yet
    open_session(page, "AAPL:10, MSFT:10")
    expect(panel).to_be_visible()
    expect(page.get_by_test_id("palert-list")).to_be_empty()

    # bad input: a drift alert without targets is refused in the page, with the reason
    page.get_by_test_id("palert-kind").select_option("drift")
    expect(page.get_by_test_id("palert-targets")).to_be_visible()
    expect(page.get_by_test_id("palert-threshold")).to_be_hidden()
    page.get_by_test_id("palert-create").click()
    expect(page.get_by_test_id("palert-msg")).to_contain_text("target weights")
    # a holding the session does not have: the server's 422 is shown
    page.get_by_test_id("palert-kind").select_option("metric")
    page.get_by_test_id("palert-ticker").fill("IBM")
    page.get_by_test_id("palert-threshold").fill("0.25")
    page.get_by_test_id("palert-create").click()
    expect(page.get_by_test_id("palert-msg")).to_contain_text("not in the portfolio")

    # total value above 1 (any portfolio): true at the next revaluation, so it fires
    page.get_by_test_id("palert-kind").select_option("total_value")
    page.get_by_test_id("palert-comparison").select_option("above")
    page.get_by_test_id("palert-threshold").fill("1")
    page.get_by_test_id("palert-create").click()
    expect(page.get_by_test_id("palert-msg")).to_contain_text("created")
    row = page.get_by_test_id("palert-row")
    expect(row).to_have_count(1)
    fire = page.get_by_test_id("palert-fire")
    expect(fire.first).to_be_visible(timeout=30_000)
    expect(fire.first).to_contain_text("total_value")
    expect(fire.first).to_contain_text("driven by")
    expect(row).to_have_attribute("data-state", "fired")
    expect(page.get_by_test_id("palert-track")).to_contain_text("drawdown")
    shot(page, "05-portfolio-alert-fired")

    row.get_by_test_id("palert-delete").click()
    expect(row).to_have_count(0)
    # the only console line is Chromium's own report of the refused POST (the 422 above)
    assert [e for e in console.errors if "status of 422" not in e] == []
