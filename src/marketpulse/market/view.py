"""The one market of the service, as the sessions see it: prices and histories at a tick.

At a given tick every session, on every instance, sees the same price for a symbol: tick
sources are pure functions of (symbol, tick). Live providers (yahoo, nse) are reached through
a ``QuoteFeed`` (the DataFetcher); there the tick only keys the in-process memo. The ports are
described in ``market/ports.py``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from marketpulse.errors import (
    FxUnavailable,
    MarketDataError,
    PermanentSourceError,
    QuoteUnavailable,
)
from marketpulse.market.fx import pair_symbol
from marketpulse.market.ports import DatedRates, QuoteFeed, TickSource

HISTORY_BARS = 253  # 252 returns: docs/metrics.md
_MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Priced:
    """A price in the currency its source states."""

    price: float
    currency: str


@dataclass(frozen=True, slots=True)
class FxRates:
    """Rates into one base currency at a tick: ``rates[c]`` is the price of one ``c`` in the
    base (the base itself is not listed). ``stale`` names the currencies whose rate is a
    last-resort reference rate (offline, dated) rather than a current one; ``missing`` those no
    source has (only when asked not to raise)."""

    rates: dict[str, float]
    stale: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset()


class Market:
    """Prices, exchange rates and adjusted-close histories at a tick, memoised per (symbol,
    tick). Exchange rates are the quotes of pair symbols (``INRUSD=X``: one INR in USD): a tick
    source answers those it knows, then ``reference`` (the offline reference rates), served
    stale; a live feed puts them through its fallback chain like any quote. A rate that no
    source has raises ``FxUnavailable``; nothing here ever assumes 1:1."""

    def __init__(
        self,
        source: TickSource | None = None,
        feed: QuoteFeed | None = None,
        *,
        reference: DatedRates | None = None,
    ) -> None:
        if source is None and feed is None:
            raise ValueError("a market needs a tick source or a live feed")
        self.source = source
        self.feed = feed
        self.reference = reference
        self._history: OrderedDict[tuple[str, int], tuple[tuple[str, float], ...]] = OrderedDict()

    @property
    def name(self) -> str:
        return self.source.name if self.source is not None else "live"

    def knows(self, symbol: str) -> bool:
        return self.source.knows(symbol) if self.source is not None else True

    async def prices(self, symbols: Iterable[str], tick: int) -> dict[str, float]:
        """Close of every symbol at ``tick`` (in its own currency). Raises QuoteUnavailable
        naming the missing ones."""
        return {s: p.price for s, p in (await self.priced(symbols, tick)).items()}

    async def priced(self, symbols: Iterable[str], tick: int) -> dict[str, Priced]:
        """Close and currency of every symbol at ``tick``; QuoteUnavailable names the missing."""
        wanted = sorted(set(symbols))
        if self.source is not None:
            src = self.source
            try:
                return {s: Priced(src.bar(s, tick).close, src.currency(s)) for s in wanted}
            except PermanentSourceError as exc:
                raise QuoteUnavailable(str(exc)) from exc
        assert self.feed is not None
        quotes = await self.feed.fetch_batch_data(wanted, tick=tick)
        missing = [s for s in wanted if s not in quotes]
        if missing:
            raise QuoteUnavailable(f"no price for {', '.join(missing)}")
        return {s: Priced(quotes[s].price, quotes[s].currency) for s in wanted}

    async def rates(
        self, currencies: Iterable[str], base: str, tick: int, *, strict: bool = True
    ) -> FxRates:
        """The rate of every currency into ``base`` at ``tick``. Raises FxUnavailable naming
        the pairs no source has (never a 1:1 stand-in); with ``strict`` False they are listed
        in ``missing`` instead."""
        wanted = sorted(set(currencies) - {base})
        if not wanted:
            return FxRates({})
        pairs = {c: pair_symbol(c, base) for c in wanted}
        rates: dict[str, float] = {}
        stale: set[str] = set()
        if self.source is not None:
            rates.update(self._tick_rates(pairs, tick))
        elif self.feed is not None:
            quotes = await self.feed.fetch_batch_data(list(pairs.values()), tick=tick)
            for c, pair in pairs.items():
                q = quotes.get(pair)
                if q is not None:
                    rates[c] = q.price
                    if q.stale:
                        stale.add(c)
        for c in [c for c in wanted if c not in rates]:
            rate = await self._reference_rate(pairs[c], tick)
            if rate is not None:
                rates[c] = rate
                stale.add(c)
        missing = [c for c in wanted if c not in rates]
        if missing and strict:
            names = ", ".join(pairs[c] for c in missing)
            raise FxUnavailable(f"no exchange rate for {names}")
        return FxRates(rates, frozenset(stale), frozenset(missing))

    def _tick_rates(self, pairs: dict[str, str], tick: int) -> dict[str, float]:
        """The rates the tick source has (its bar's close at ``tick``)."""
        assert self.source is not None
        out: dict[str, float] = {}
        for c, pair in pairs.items():
            if self.source.knows(pair):
                try:
                    out[c] = self.source.bar(pair, tick).close
                except PermanentSourceError:
                    continue
        return out

    async def _reference_rate(self, pair: str, tick: int) -> float | None:
        """The offline reference rate of ``pair`` (dated, so stale), or None."""
        if self.reference is None:
            return None
        try:
            return (await self.reference.quote(pair, tick)).price
        except MarketDataError:
            return None

    async def rate_history(
        self, currency: str, base: str, tick: int, *, until: str | None = None
    ) -> tuple[tuple[str, float], ...]:
        """Up to 253 (date, rate into ``base``) pairs ending at ``tick``, oldest first, from
        the first source that has the pair (the tick source or live feed, then ``reference``,
        whose history ends on ``until``, the last date of the prices to convert). Raises
        FxUnavailable."""
        pair = pair_symbol(currency, base)
        if self.source is None or self.source.knows(pair):
            try:
                return await self.history(pair, tick)
            except MarketDataError:
                pass
        if self.reference is not None:
            key = (f"{pair}@{until}", -1)  # the reference rates do not move with the tick
            hit = self._history.get(key)
            if hit is not None:
                return hit
            try:
                bars = await self.reference.history_until(pair, until, HISTORY_BARS)
            except MarketDataError:
                bars = []
            if bars:
                value = tuple((b.date, b.close) for b in bars)
                self._remember(key, value)
                return value
        raise FxUnavailable(f"no exchange-rate history for {pair}")

    def _remember(self, key: tuple[str, int], value: tuple[tuple[str, float], ...]) -> None:
        self._history[key] = value
        if len(self._history) > _MEMO_LIMIT:
            self._history.popitem(last=False)

    async def history(self, symbol: str, tick: int) -> tuple[tuple[str, float], ...]:
        """Up to 253 (date, adjusted close) pairs ending at ``tick``, oldest first."""
        key = (symbol, tick)
        hit = self._history.get(key)
        if hit is not None:
            self._history.move_to_end(key)
            return hit
        if self.source is not None:
            bars = self.source.history(symbol, tick, HISTORY_BARS)
        else:
            assert self.feed is not None
            bars = await self.feed.history(symbol, HISTORY_BARS, tick=tick)
        value = tuple((b.date, b.adj_close) for b in bars)
        self._remember(key, value)
        return value

    async def histories(
        self, symbols: Iterable[str], tick: int
    ) -> dict[str, tuple[tuple[str, float], ...]]:
        syms = sorted(set(symbols))
        try:
            got = await asyncio.gather(*(self.history(s, tick) for s in syms))
        except MarketDataError:
            raise
        return dict(zip(syms, got, strict=True))
