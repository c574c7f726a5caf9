"""Browser-test fixtures: the real server as a subprocess and Debian's Chromium via Playwright.

Chromium is never downloaded (no ``playwright install``): the tests drive ``/usr/bin/chromium``
(or ``MARKETPULSE_CHROMIUM``). Without it, or without the playwright package (a pip install of
``requirements.txt`` alone), they skip with a reason, unless ``CI`` is set, where either is a
failure: a test module that cannot import playwright is then a collection error, as any other.
Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marketpulse.infra.redis.embedded import EmbeddedRedis, free_port
from support.service_process import SCREENSHOTS, Console, ServerProcess

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    wanted = os.environ.get("MARKETPULSE_CHROMIUM", "/usr/bin/chromium")
    if Path(wanted).exists():
        return wanted
    return shutil.which("chromium") or shutil.which("chromium-browser")


def playwright_missing() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return True
    return False


NO_PLAYWRIGHT = "the playwright package is not installed (pip install -r requirements-dev.txt)"


class NotImported(pytest.Module):
    """A browser test module left unimported (it imports playwright, which is missing): one
    skipped ``e2e`` test stands for it, so the run reports the reason (and ``-m e2e`` still
    selects something) instead of failing to import it."""

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        return [SkippedModule.from_parent(self, name="[not imported]")]


class SkippedModule(pytest.Item):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker(pytest.mark.e2e)

    def runtest(self) -> None:
        pytest.skip(NO_PLAYWRIGHT)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name


def pytest_pycollect_makemodule(
    module_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    if playwright_missing() and not os.environ.get("CI"):
        return NotImported.from_parent(parent, path=module_path)
    return None  # pytest's own Module: under CI, a missing playwright fails the collection


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = None
    if chromium_path() is None:
        reason = "chromium is not installed (apt-get install chromium)"
    elif playwright_missing():
        reason = NO_PLAYWRIGHT
    if reason is None or os.environ.get("CI"):
        return  # under CI the browser fixture fails loudly instead
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread while it
    is open, which would break the async tests that run after the browser tests. Chromium's
    profile is Playwright's temporary one; its crash-report database and caches (which it keeps
    in the user's config and cache folders) go to this run's tmp folder."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed and CI is set")
        pytest.skip("chromium is not installed")
    with sync_playwright() as p:
        home = Path(tmp_path_factory.mktemp("chromium"))
        env: dict[str, str | float | bool] = {
            **os.environ,
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
        }
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, env=env)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """Settings of the module's server beyond the defaults below; a test module may override."""
    return {}


@pytest.fixture(scope="module")
def server(
    redis_server: EmbeddedRedis,
    server_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_path = SCREENSHOTS.parent / "e2e-server.log"
    env = {
        "MARKETPULSE_REDIS_URL": redis_server.url,
        "MARKETPULSE_DATA_DIR": str(tmp_path_factory.mktemp("server-data")),
        "MARKETPULSE_HOST": "127.0.0.1",
        "MARKETPULSE_DATA_SOURCE": "simulated",
        "MARKETPULSE_MARKET_INTERVAL": "0.5",
        "MARKETPULSE_MONITOR_INTERVAL": "0.5",
        "MARKETPULSE_METRIC_DELAY": "0.05-0.1",
        "MARKETPULSE_LOG_LEVEL": "INFO",
        **server_env,
    }
    proc = ServerProcess(env, free_port(), log_path)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser: object, server: ServerProcess, console: Console) -> Iterator[object]:
    from playwright.sync_api import Browser, ConsoleMessage, Error

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(20_000)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            console.errors.append(f"console: {msg.text}")

    def on_error(err: Error) -> None:
        console.errors.append(f"pageerror: {err.message}")

    pg.on("console", on_console)
    pg.on("pageerror", on_error)
    try:
        yield pg
    finally:
        context.close()
