"""A local market-data HTTP server for offline tests (aiohttp.web on 127.0.0.1).

Serves the recorded Yahoo chart and NSE quote bodies from tests/fixtures, and misbehaves on
demand: ``server.faults`` is a queue of scripted answers consumed by API requests (the NSE
warm-up ``GET /`` and Yahoo's cookie/crumb endpoints always answer normally).

``redirecting_session`` also tells yfinance the exchange time zones of the recorded charts, as
an earlier run would have left them in its cache: without them yfinance first asks for the
zone with an extra chart request, which would take one of the scripted faults and make the
number of chart calls depend on what the cache held. The caches themselves live in the test
run's temporary folder (``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from aiohttp import web
from requests.adapters import HTTPAdapter

FIXTURES = Path(__file__).parents[1] / "fixtures"
CHARTS = {
    "MSFT": "yahoo_chart_MSFT_1d_6mo_2025-10-29.json",
    "TCS.NS": "yahoo_chart_TCS.NS_1d_1mo_2026-10-05.json",
    "BATS.L": "yahoo_chart_BATS.L_1d_2026-08-28-to-2026-09-25_2026-09-27.json",
    "GS2C.DE": "yahoo_chart_GS2C.DE_1d_5d_2025-10-29.json",
    "INR=X": "yahoo_chart_INR=X_1d_2017-07-10-to-2017-07-13_2024-09-14.json",
    "EURUSD=X": "yahoo_chart_EURUSD=X_1d_2020-01-01-to-2020-01-03_2024-09-16.json",
    "NVDA": "yahoo_chart_NVDA_1d_split_2021-02-01-to-2022-01-31_2024-09-16.json",
}


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@dataclass
class Fault:
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class MarketServer:
    def __init__(self) -> None:
        self.faults: deque[Fault] = deque()
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path?query, cookies)
        self.api_calls = 0
        self.release = asyncio.Event()
        self.any_chart_is = ""  # serve this chart for every symbol (concurrency test)
        self.call_times: list[float] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path_qs, dict(request.cookies)))
        path = request.path
        if path == "/" or path.endswith("getcrumb"):
            resp = web.Response(text="crumb" if "crumb" in path else "<html>home</html>")
            resp.set_cookie("nsit", "warm")
            return resp
        self.api_calls += 1
        self.call_times.append(time.monotonic())
        if self.faults:
            fault = self.faults.popleft()
            if fault.hang:
                await self.release.wait()
            return web.Response(status=fault.status, text=fault.body, headers=fault.headers)
        return self._recorded(request)

    def _recorded(self, request: web.Request) -> web.Response:
        path, q = request.path, request.query
        if path.startswith("/v8/finance/chart/"):
            symbol = urllib.parse.unquote(path.rsplit("/", 1)[1])
            name = self.any_chart_is or CHARTS.get(symbol)
            if name is None:
                body = fixture("yahoo_chart_error_404_SIX_not_found.json")
                return web.Response(status=404, text=body, content_type="application/json")
            return web.Response(text=fixture(name), content_type="application/json")
        if path == "/api/NextApi/apiClient/GetQuoteApi":
            if q.get("symbol") == "HDFCBANK":
                row = json.loads(
                    fixture("nse_nextapi_getSymbolData_HDFCBANK_2026-05-27_equityResponse0.json")
                )
                return web.json_response({"equityResponse": [row]})
            return web.Response(status=404, text='{"msg": "not found"}')
        if path == "/api/quote-equity" and q.get("symbol") == "INFY":
            if q.get("section") == "trade_info":
                return web.Response(text=fixture("nse_quote_equity_trade_info_2023-12-06.json"))
            return web.Response(text=fixture("nse_quote_equity_INFY_2023-10-16.json"))
        return web.Response(status=404, text="{}")


class RedirectAdapter(HTTPAdapter):
    """A requests transport that sends every URL to the local server (for yfinance)."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self._base = urllib.parse.urlsplit(base)

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        u = urllib.parse.urlsplit(request.url)
        request.url = urllib.parse.urlunsplit(
            (self._base.scheme, self._base.netloc, u.path, u.query, "")
        )
        return super().send(request, **kwargs)


def recorded_time_zones() -> dict[str, str]:
    """The exchange time zone of each recorded chart, from the chart's own meta."""
    return {
        symbol: json.loads(fixture(name))["chart"]["result"][0]["meta"]["exchangeTimezoneName"]
        for symbol, name in CHARTS.items()
    }


def redirecting_session(base: str) -> requests.Session:
    from yfinance import cache

    zones = cache.get_tz_cache()
    for symbol, zone in recorded_time_zones().items():
        zones.store(symbol, zone)
    session = requests.Session()
    adapter = RedirectAdapter(base)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
