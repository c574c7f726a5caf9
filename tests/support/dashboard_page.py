"""The dashboard page as the browser tests drive it: open it, open a session, add a symbol or an
alert, take a screenshot, and record the analysis states the page goes through."""

from __future__ import annotations

from playwright.sync_api import Page, ViewportSize, expect

from support.service_process import SCREENSHOTS, ServerProcess

PHONE = ViewportSize(width=390, height=844)

# Records every state the analysis badge and the metric rows go through, so the test sees the
# transitions even when they are quicker than a poll would be.
RECORDER = """
() => {
  window.__seen = {states: [], metrics: []};
  const badge = document.getElementById('analysis-state');
  new MutationObserver(() => window.__seen.states.push(badge.dataset.state))
    .observe(badge, {attributes: true, attributeFilter: ['data-state']});
  for (const row of document.querySelectorAll('tr[data-metric]')) {
    new MutationObserver(() => {
      if (row.dataset.state === 'done') window.__seen.metrics.push(row.dataset.metric);
    }).observe(row, {attributes: true, attributeFilter: ['data-state']});
  }
}
"""


def open_dashboard(page: Page, server: ServerProcess) -> None:
    page.goto(server.base_url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def add_symbol(page: Page, symbol: str) -> None:
    card = page.get_by_test_id(f"symbol-{symbol}")
    if card.count():
        return
    page.get_by_test_id("symbol-input").fill(symbol)
    page.get_by_test_id("symbol-add").click()
    expect(card).to_be_visible()


def open_session(page: Page, holdings: str) -> None:
    page.get_by_test_id("session-holdings").fill(holdings)
    page.get_by_test_id("session-create").click()
    expect(page.get_by_test_id("session-view")).to_be_visible()
    expect(page.get_by_test_id("conn-session")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("total-value")).not_to_have_text("–")


def create_alert(page: Page, symbol: str, threshold: str) -> None:
    page.get_by_test_id("alert-symbol").fill(symbol)
    page.get_by_test_id("alert-type").select_option("price_threshold")
    page.get_by_test_id("alert-comparison").select_option("above")
    page.get_by_test_id("alert-threshold").fill(threshold)
    page.get_by_test_id("alert-create").click()
    expect(page.get_by_test_id("alert-msg")).to_contain_text("Alert created")
