"""Yahoo Finance quotes and daily history through yfinance (provider name ``yahoo``).

``yahoo`` uses yfinance itself, as the issue asks. yfinance is blocking, so every call runs in a
bounded ``ThreadPoolExecutor`` under a timeout (both ours and the HTTP timeout yfinance passes
on, so a hung request also frees its thread). Offline tests point yfinance at a local HTTP server
by giving it a ``requests.Session`` whose transport rewrites every URL to that server (yfinance
accepts a requests or curl_cffi session); production passes none and yfinance uses its own
browser-impersonating curl_cffi session. Note that yfinance keeps that session in a process-wide
singleton: the last session given wins for every Ticker.

yfinance keeps caches on disk (a symbol's exchange time zone, Yahoo's cookie) in the user's
cache folder unless told otherwise; the service passes ``cache_dir`` (``<data_dir>/yfinance``)
so they live with the rest of its data. The setting is process-wide and only takes effect
before yfinance first opens its caches, so it is made when the provider is built. When the zone
of a symbol is not in that cache, yfinance learns it with an extra chart request (``range=1d``)
and memoizes the response in a process-wide ``lru_cache``, failed answers included: after a
failed call the provider forgets those memoized answers, or one 5xx on a symbol's first lookup
would fail that symbol until the process restarts.

Error translation at this edge: yfinance hides most failures as empty frames unless told not to,
so the provider turns its process-wide ``config.debug.hide_exceptions`` off (what the deprecated
``raise_errors=True`` of each call did; this service is the process's only yfinance user) and an
empty frame still counts as "no data".
``YFRateLimitError`` (and Yahoo's plain-text ``Edge: Too Many Requests`` surfacing as a JSON
decode error), timeouts and connection errors become ``TransientSourceError``; an unknown or
delisted symbol (``YFPricesMissingError``, ``YFTzMissingError``, an empty frame) becomes
``PermanentSourceError``. NSE symbols use ``.NS`` and BSE ``.BO`` as Yahoo spells them.

Currency: the chart's ``meta.currency``, normalised by ``fx.normalise_currency``; a listing
priced in a minor unit (London's ``GBp``, Johannesburg's ``ZAc``, Tel Aviv's ``ILA``) has its
prices (quote and history) divided into the major unit. A chart that states no currency, or one
we do not know, is a rejected quote (``InvalidQuote``), never a silent USD. Exchange rates are
charts of pair symbols (``USDINR=X``, ``EURUSD=X``, Yahoo's short ``INR=X`` for USD/INR), whose
``meta.currency`` is the quote currency.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yfinance as yf
from yfinance import data as yfdata
from yfinance import exceptions as yfx

from marketpulse.errors import (
    InvalidQuote,
    MarketDataError,
    PermanentSourceError,
    TransientSourceError,
    ValidationFailed,
)
from marketpulse.market.fx import normalise_currency
from marketpulse.market.quotes import Bar, Split, StockData

T = TypeVar("T")
META_KEYS = (
    "regularMarketPrice",
    "regularMarketTime",
    "regularMarketVolume",
    "regularMarketDayHigh",
    "regularMarketDayLow",
    "currency",
)


def translate(symbol: str, exc: Exception) -> MarketDataError:
    """Our error for an exception raised inside yfinance."""
    text = f"yahoo {symbol}: {type(exc).__name__}: {exc}"
    if isinstance(exc, yfx.YFRateLimitError) or "Too Many Requests" in str(exc):
        return TransientSourceError(text)
    if isinstance(exc, (yfx.YFPricesMissingError, yfx.YFTzMissingError)):
        return PermanentSourceError(text)
    if isinstance(exc, json.JSONDecodeError):
        return TransientSourceError(text)  # Yahoo's 429/5xx bodies are text/HTML, not JSON
    if isinstance(exc, yfx.YFDataException) and "CURRENTLY DOWN" in str(exc):
        return TransientSourceError(text)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
        return PermanentSourceError(text)  # an HTTPError for a 404 and the like
    if isinstance(exc, (OSError, TimeoutError)):
        return TransientSourceError(text)  # requests and curl_cffi errors are OSErrors
    return PermanentSourceError(text)


def forget_memoized_lookups() -> None:
    """Drop yfinance's memoized responses (its time-zone lookups), failed ones included."""
    clear = getattr(getattr(yfdata.YfData, "cache_get", None), "cache_clear", None)
    if callable(clear):
        clear()


def as_utc(when: Any) -> datetime:
    """A UTC datetime from epoch seconds or a pandas Timestamp (yfinance formats meta times)."""
    if hasattr(when, "to_pydatetime"):
        return when.to_pydatetime().astimezone(UTC)  # type: ignore[no-any-return]
    return datetime.fromtimestamp(int(when), UTC)


def chart_currency(symbol: str, meta: dict[str, Any]) -> tuple[str, float]:
    """The chart's ISO currency and the divisor into its major unit; ``InvalidQuote`` when the
    chart states none (or one we do not know)."""
    try:
        return normalise_currency(meta.get("currency"))
    except ValidationFailed as exc:
        raise InvalidQuote(f"yahoo {symbol}: {exc.message}") from exc


def frame_bars(frame: Any, divisor: float = 1.0) -> list[Bar]:
    """Daily bars (oldest first) from a yfinance history frame, prices divided by ``divisor``
    (100 for a chart in pence); rows without a close dropped."""
    bars: list[Bar] = []
    for stamp, row in frame.iterrows():
        close = float(row["Close"])
        if not math.isfinite(close):
            continue
        adj = float(row.get("Adj Close", close))
        bars.append(
            Bar(
                date=stamp.strftime("%Y-%m-%d"),
                open=float(row["Open"]) / divisor,
                high=float(row["High"]) / divisor,
                low=float(row["Low"]) / divisor,
                close=close / divisor,
                adj_close=(adj if math.isfinite(adj) else close) / divisor,
                volume=int(row["Volume"]) if math.isfinite(float(row["Volume"])) else 0,
            )
        )
    return bars


def frame_splits(frame: Any) -> tuple[Split, ...]:
    """The splits of a yfinance history frame read with ``actions=True`` (its ``Stock Splits``
    column: Yahoo's ``events.splits`` as ``numerator / denominator`` on the ex-date's row, 0
    elsewhere), oldest first; each date is the exchange's (the frame's index zone)."""
    if frame is None or "Stock Splits" not in getattr(frame, "columns", ()):
        return ()
    out: list[Split] = []
    for stamp, ratio in frame["Stock Splits"].items():
        r = float(ratio)
        if math.isfinite(r) and r > 0 and r != 1.0:
            out.append(Split(date=stamp.strftime("%Y-%m-%d"), ratio=r))
    return tuple(out)


def quote_from(symbol: str, frame: Any, meta: dict[str, Any]) -> StockData:
    """The current quote: meta's regular-market fields, the open of the quote's session's bar,
    and as the previous close the close of the last bar *before* that session, in the chart's
    currency's major unit (``chart_currency``).

    The quote's session is the exchange-local date of ``regularMarketTime`` (the frame's
    index is in the exchange's zone), so a bar Yahoo already shows for a later day (before
    its open) neither becomes the session's bar nor moves the previous close: percentage
    change is measured against the previous session's close (docs/alerts.md).

    The quote carries the splits the chart lists (``frame_splits``; the live quote reads 5 days)
    for the alert engine to confirm a jump with (docs/alerts.md, Splits)."""
    if frame is None or frame.empty:
        raise PermanentSourceError(f"yahoo {symbol}: no data (symbol may be delisted)")
    currency, div = chart_currency(symbol, meta)
    try:
        stamp = as_utc(meta.get("regularMarketTime") or frame.index[-1])
        zone = getattr(frame.index, "tz", None)
        day = (stamp.astimezone(zone) if zone is not None else stamp).date()
        dates = [when.date() for when in frame.index]
        upto = frame[[d <= day for d in dates]]
        last = upto.iloc[-1] if len(upto) else frame.iloc[-1]
        earlier = frame[[d < day for d in dates]]["Close"].dropna()
        previous = float(earlier.iloc[-1]) if len(earlier) else None
        price = float(meta.get("regularMarketPrice") or last["Close"])
        open_ = float(last["Open"]) if math.isfinite(float(last["Open"])) else price
        return StockData(
            symbol=symbol,
            price=price / div,
            volume=int(meta.get("regularMarketVolume") or last["Volume"] or 0),
            timestamp=stamp,
            high=float(meta.get("regularMarketDayHigh") or last["High"]) / div,
            low=float(meta.get("regularMarketDayLow") or last["Low"]) / div,
            open=open_ / div,
            close=(previous if previous is not None else price) / div,
            previous_close=previous / div if previous is not None else None,
            source="yahoo",
            currency=currency,
            splits=frame_splits(frame),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentSourceError(f"yahoo {symbol}: unexpected chart data: {exc!r}") from exc


class YahooProvider:
    """yfinance behind a bounded thread pool; every call is bounded by ``timeout_s``."""

    name = "yahoo"
    live = True

    def __init__(
        self,
        *,
        max_workers: int = 4,
        timeout_s: float = 10.0,
        session: object | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        if cache_dir is not None:  # before yfinance opens its caches (it creates the folder)
            yf.set_tz_cache_location(str(cache_dir))  # all of its caches, not only the zones
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="yfinance")
        yf.config.debug.hide_exceptions = False  # raise failures instead of logging them away
        self._timeout_s = timeout_s
        self._session = session

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def quote(self, symbol: str, tick: int) -> StockData:
        frame, meta = await self._run(symbol, lambda: self._fetch(symbol, "5d"))
        return quote_from(symbol, frame, meta)

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        frame, meta = await self._run(symbol, lambda: self._fetch(symbol, "2y"))
        _, divisor = chart_currency(symbol, meta)
        bars = frame_bars(frame, divisor)
        if not bars:
            raise PermanentSourceError(f"yahoo {symbol}: no daily history")
        return bars[-n:]

    def _fetch(self, symbol: str, period: str) -> tuple[Any, dict[str, Any]]:
        ticker = yf.Ticker(symbol, session=self._session)
        frame = ticker.history(
            period=period,
            interval="1d",
            auto_adjust=False,
            actions=True,  # the splits (``frame_splits``); dividends are read but unused
            timeout=self._timeout_s,
        )
        meta = ticker.get_history_metadata() or {}
        # a lazy mapping: read only the plain keys (copying it whole loads trading periods)
        return frame, {k: meta[k] for k in META_KEYS if k in meta}

    async def _run(self, symbol: str, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await loop.run_in_executor(self._pool, call)
        except TimeoutError as exc:
            raise TransientSourceError(f"yahoo {symbol}: timed out") from exc
        except MarketDataError:
            raise
        except Exception as exc:  # yfinance raises anything; translated here, at the edge
            forget_memoized_lookups()
            raise translate(symbol, exc) from exc
