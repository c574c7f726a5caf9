"""NSE India quotes from NSE's own JSON API, with aiohttp (provider name ``nse``).

NSE serves JSON only to a client that looks like a browser and holds the cookies its home page
sets, so the first request of a session is a warm-up ``GET /`` with browser-like headers; a 401
or 403 later drops the warm-up so the next attempt redoes it. Two endpoints are handled: the
2026 ``api/NextApi/apiClient/GetQuoteApi?functionName=getSymbolData`` (tried first) and the older
``api/quote-equity?symbol=X`` (plus its ``section=trade_info`` for the volume), used when the
new one answers 404. Symbols may carry Yahoo's ``.NS`` suffix (``TCS.NS`` → ``TCS``); ``.BO``
(BSE) symbols are refused as permanent errors. Every NSE quote is in INR. NSE gives no daily
history here: ``history`` raises ``PermanentSourceError`` and the fallback chain moves on.

Why not nsepy (0.8): it still imports on Python 3.13 (with a ``SyntaxWarning``) but is dead,
because every URL behind its quotes and history is on NSE's retired ``www1`` site. Why not
nsetools (2.0.1): it gets a quote only from ``api/quote-equity``, which NSE retired in 2026 (it
answers 403), with a blocking ``sleep`` before each request and no timeout on any; the warm-up
and quote requests are easy to make directly, on the event loop, with a timeout.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp

from marketpulse.errors import PermanentSourceError, TransientSourceError
from marketpulse.market.providers.http_status import check_status, parse_json
from marketpulse.market.quotes import Bar, StockData

IST = timezone(timedelta(hours=5, minutes=30))
BROWSER_HEADERS = {
    "User-Agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0 Safari/537.36"
    ),
    "Accept": "application/json, text/plain, */*",
    "Accept-Language": "en-US,en;q=0.9",
    "Referer": "https://www.nseindia.com/",
}
NEXT_API = "api/NextApi/apiClient/GetQuoteApi"
LEGACY_API = "api/quote-equity"


def nse_symbol(symbol: str) -> str:
    """NSE's own symbol: ``TCS.NS`` → ``TCS``; BSE symbols are not on NSE."""
    if symbol.upper().endswith(".BO"):
        raise PermanentSourceError(f"nse: {symbol} is a BSE symbol")
    return symbol[:-3] if symbol.upper().endswith(".NS") else symbol


def nse_time(text: str | None) -> datetime:
    """NSE's ``27-May-2026 11:07:09`` (IST) as a UTC datetime."""
    if not text:
        raise PermanentSourceError("nse: quote has no lastUpdateTime")
    try:
        local = datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S").replace(tzinfo=IST)
    except ValueError as exc:
        raise PermanentSourceError(f"nse: bad time {text!r}") from exc
    return local.astimezone(UTC)


def parse_next_api(symbol: str, body: Any) -> StockData:
    """A quote from the ``getSymbolData`` body ``{"equityResponse": [{...}]}``."""
    try:
        rows = body["equityResponse"]
        if not rows:
            raise PermanentSourceError(f"nse: unknown symbol {symbol}")
        row = rows[0]
        meta, trade = row["metaData"], row["tradeInfo"]
        last = float(trade.get("lastPrice") or row["orderBook"]["lastPrice"])
        return StockData(
            symbol=symbol,
            price=last,
            volume=int(trade["totalTradedVolume"]),
            timestamp=nse_time(row.get("lastUpdateTime")),
            high=float(meta["dayHigh"]),
            low=float(meta["dayLow"]),
            open=float(meta["open"]),
            close=float(meta["previousClose"]),
            previous_close=float(meta["previousClose"]),
            source="nse",
            currency="INR",
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PermanentSourceError(f"nse: unexpected getSymbolData payload: {exc!r}") from exc


def parse_quote_equity(symbol: str, body: Any, trade_info: Any) -> StockData:
    """A quote from the legacy ``quote-equity`` body and its ``trade_info`` section."""
    try:
        price = body["priceInfo"]
        day = price["intraDayHighLow"]
        book = trade_info["marketDeptOrderBook"]["tradeInfo"]
        return StockData(
            symbol=symbol,
            price=float(price["lastPrice"]),
            volume=round(float(book["totalTradedVolume"])),
            timestamp=nse_time(body["metadata"]["lastUpdateTime"]),
            high=float(day["max"]),
            low=float(day["min"]),
            open=float(price["open"]),
            close=float(price["previousClose"]),
            previous_close=float(price["previousClose"]),
            source="nse",
            currency="INR",
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentSourceError(f"nse: unexpected quote-equity payload: {exc!r}") from exc


class NseProvider:
    """NSE quotes over aiohttp; every request is bounded by ``timeout_s``."""

    name = "nse"
    live = True

    def __init__(self, base_url: str = "https://www.nseindia.com", *, timeout_s: float = 10.0):
        self._base = base_url.rstrip("/") + "/"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._warm = False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def quote(self, symbol: str, tick: int) -> StockData:
        code = nse_symbol(symbol)
        await self._warm_up()
        params = {
            "functionName": "getSymbolData",
            "marketType": "N",
            "series": "EQ",
            "symbol": code,
        }
        try:
            return parse_next_api(symbol, await self._get_json(NEXT_API, params))
        except PermanentSourceError as exc:
            if "HTTP 404" not in str(exc):
                raise
        body = await self._get_json(LEGACY_API, {"symbol": code})
        trade = await self._get_json(LEGACY_API, {"symbol": code, "section": "trade_info"})
        return parse_quote_equity(symbol, body, trade)

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        raise PermanentSourceError("nse: daily history is not offered by this provider")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=BROWSER_HEADERS,
                timeout=self._timeout,
                cookie_jar=aiohttp.CookieJar(unsafe=True),
            )
        return self._session

    async def _warm_up(self) -> None:
        if self._warm:
            return
        await self._request("")
        self._warm = True

    async def _get_json(self, path: str, params: dict[str, str]) -> Any:
        return parse_json("nse", await self._request(path, params))

    async def _request(self, path: str, params: dict[str, str] | None = None) -> str:
        try:
            async with self._client().get(self._base + path, params=params) as resp:
                text = await resp.text(errors="replace")
                if resp.status in (401, 403):
                    self._warm = False  # cookies expired or refused: warm up again next time
                    raise TransientSourceError(f"nse: HTTP {resp.status} (cookies refused)")
                check_status("nse", resp.status, resp.headers.get("Retry-After"), text)
                return text
        except TimeoutError as exc:
            raise TransientSourceError(f"nse: timed out on {path or '/'}") from exc
        except aiohttp.ClientError as exc:
            raise TransientSourceError(f"nse: {type(exc).__name__}: {exc}") from exc
