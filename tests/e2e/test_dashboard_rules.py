"""The rule editor in real headless Chromium against the real server (see conftest.py): an RSI
crossing built in the form (no string language) shows "would have fired N times in the last
year" before it is saved, with its fires drawn on the symbol's chart, and N is what
POST /api/alerts/backtest answers for that rule and range; saved, the alert lists its state;
it can be snoozed and deleted. Waits are Playwright's, never sleeps."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from support.dashboard_page import open_dashboard, shot
from support.service_process import Console, ServerProcess

pytestmark = pytest.mark.e2e


def test_a_rule_is_backtested_before_it_is_saved_then_created_snoozed_and_deleted(
    page: Page, server: ServerProcess, console: Console
) -> None:
    open_dashboard(page, server)
    page.get_by_test_id("alert-symbol").fill("MSFT")
    page.get_by_test_id("alert-type").select_option("indicator")
    expect(page.get_by_test_id("alert-kind")).to_be_visible()
    expect(page.get_by_test_id("alert-fast")).to_be_hidden()  # ma_cross only
    page.get_by_test_id("alert-kind").select_option("rsi")
    page.get_by_test_id("alert-period").fill("14")
    page.get_by_test_id("alert-comparison").select_option("crosses_above")
    page.get_by_test_id("alert-threshold").fill("60")
    page.get_by_test_id("alert-margin").fill("2")

    line = page.get_by_test_id("alert-backtest")
    expect(line).to_contain_text(re.compile(r"Would have fired \d+ times? in the last year"))
    fires = int(line.get_attribute("data-fires") or "-1")
    rule = {
        "symbol": "MSFT",
        "alert_type": "indicator",
        "indicator": {"kind": "rsi", "period": 14},
        "comparison": "crosses_above",
        "threshold": 60,
        "rearm_margin": 2,
    }
    answer = httpx.post(
        f"{server.base_url}/api/alerts/backtest",
        json={"rule": rule, "start": line.get_attribute("data-start"),
              "end": line.get_attribute("data-end")},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert fires == answer.json()["fire_count"]
    assert fires >= 1  # a year of a random walk crosses RSI 60 (else the chart shows nothing)
    chart = page.get_by_test_id("alert-backtest-chart")
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("data-fires", str(fires))
    expect(chart.locator("canvas")).to_have_count(1)
    # nothing stored by the preview
    assert httpx.get(f"{server.base_url}/api/alerts", timeout=10).json()["alerts"] == []
    shot(page, "06-rule-backtest")

    page.get_by_test_id("alert-create").click()
    expect(page.get_by_test_id("alert-msg")).to_contain_text("Alert created")
    row = page.locator('[data-testid="alert-row"][data-symbol="MSFT"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("RSI(14) crosses above 60")
    expect(row.get_by_test_id("alert-state")).to_have_text(re.compile(r"^(armed|disarmed|fired)"))

    row.get_by_test_id("alert-snooze").click()
    expect(row).to_have_attribute("data-snoozed", "true")
    expect(row.get_by_test_id("alert-state")).to_contain_text("snoozed until")

    row.get_by_test_id("alert-delete").click()
    expect(row).to_have_count(0)
    assert httpx.get(f"{server.base_url}/api/alerts", timeout=10).json()["alerts"] == []
    assert console.errors == []
