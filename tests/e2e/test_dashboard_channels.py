"""The dashboard's Channels panel in real headless Chromium against the real server: a channel
added in the form is listed with its target masked (the secret never reaches the page), "send a
test" shows the channel's own answer (ok from a receiver of ours on loopback, the error of a
dead one), bad input shows a message, and delete removes the row. Waits are Playwright's."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from playwright.sync_api import Page, expect

from marketpulse.infra.redis.embedded import free_port
from support.dashboard_page import open_dashboard, shot
from support.service_process import Console, ServerProcess

pytestmark = pytest.mark.e2e

PASSWORD, TOKEN = "SecretPw123", "TokenPathABCDEF"


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """A JSON receiver on loopback (Apprise's json:// posts to it), in a thread."""
    bodies: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], bodies
    finally:
        server.shutdown()
        server.server_close()


def add_channel(page: Page, name: str, kind: str, target: str) -> None:
    page.get_by_test_id("channel-name").fill(name)
    page.get_by_test_id("channel-kind").select_option(kind)
    page.get_by_test_id("channel-target").fill(target)
    page.get_by_test_id("channel-create").click()


def test_a_channel_is_listed_masked_tested_and_deleted(
    page: Page,
    server: ServerProcess,
    console: Console,
    receiver: tuple[int, list[dict[str, Any]]],
) -> None:
    port, bodies = receiver
    open_dashboard(page, server)
    expect(page.locator("body")).to_have_attribute("data-channels-ready", "true")

    add_channel(page, "tg", "apprise", "")
    expect(page.get_by_test_id("channel-msg")).to_contain_text("target")  # bad input: a message

    add_channel(page, "tg", "apprise", f"json://mp:{PASSWORD}@127.0.0.1:{port}/{TOKEN}")
    row = page.locator('[data-testid="channel-row"][data-name="tg"]')
    expect(row.get_by_test_id("channel-target-shown")).to_have_text(
        f"json://mp:***@127.0.0.1:{port}/***"
    )
    row.get_by_test_id("channel-test").click()
    expect(row.get_by_test_id("channel-answer")).to_have_attribute("data-state", "ok")
    assert len(bodies) == 1 and "key: test-" in bodies[0]["message"]

    add_channel(page, "dead", "apprise", f"json://127.0.0.1:{free_port()}/")
    dead = page.locator('[data-testid="channel-row"][data-name="dead"]')
    dead.get_by_test_id("channel-test").click()
    expect(dead.get_by_test_id("channel-answer")).to_have_attribute("data-state", "failed")
    expect(dead.get_by_test_id("channel-answer")).to_contain_text("Apprise")
    shot(page, "channels")

    html = page.content()
    assert PASSWORD not in html and TOKEN not in html
    for name in ("tg", "dead"):
        page.locator(f'[data-testid="channel-row"][data-name="{name}"]').get_by_test_id(
            "channel-delete"
        ).click()
        expect(page.locator(f'[data-testid="channel-row"][data-name="{name}"]')).to_have_count(0)
    assert console.errors == []
