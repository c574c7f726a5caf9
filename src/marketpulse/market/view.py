"""The one market of the service, as the sessions see it: prices and histories at a tick.

At a given tick every session, on every instance, sees the same price for a symbol: tick
sources are pure functions of (symbol, tick). Live providers (yahoo, nse) are reached through
a ``QuoteFeed`` (the DataFetcher); there the tick only keys the in-process memo. The ports are
described in ``market/ports.py``.
"""

from __future__ import annotations

import asyncio
import sys
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from marketpulse.errors import (
    FxUnavailable,
    MarketDataError,
    PermanentSourceError,
    QuoteUnavailable,
)
from marketpulse.market.fx import pair_symbol
from marketpulse.market.ports import DatedRates, QuoteFeed, TickSource

HISTORY_BARS = 253  # 252 returns: docs/metrics.md
MEMO_TICKS = 4  # histories kept per symbol: a run needs only its pinned tick
MEMO_BYTES = 8 * 2**20  # and at most this much for all of them (least recently used go first)
_DATES_INTERNED = 8192  # distinct date strings shared between entries (~33 years of days)

History = tuple[tuple[str, float], ...]
"""(date, close) pairs, oldest first."""


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


@dataclass(frozen=True, slots=True)
class _Series:
    """One memoised history, compact: the date strings are shared with every other entry
    (interned by the market), the closes one float64 array (~4 KiB for 253 bars where a tuple
    of pairs costs ~35 KiB)."""

    dates: tuple[str, ...]
    closes: np.ndarray[tuple[int], np.dtype[np.float64]]

    @property
    def nbytes(self) -> int:
        return sys.getsizeof(self.dates) + self.closes.nbytes + _ENTRY_OVERHEAD

    def pairs(self) -> History:
        return tuple(zip(self.dates, self.closes.tolist(), strict=True))


_ENTRY_OVERHEAD = 400  # the entry, its array header and its key, measured with tracemalloc


class Market:
    """Prices, exchange rates and adjusted-close histories at a tick, memoised per (symbol,
    tick). The memo is bounded by ticks (``MEMO_TICKS`` per symbol, the most recent kept) and
    by bytes (``MEMO_BYTES`` in all, least recently used evicted first). Exchange rates are the
    quotes of pair symbols (``INRUSD=X``: one INR in USD): a tick source answers those it
    knows, then ``reference`` (the offline reference rates), served stale; a live feed puts
    them through its fallback chain like any quote. A rate that no source has raises
    ``FxUnavailable``; nothing here ever assumes 1:1."""

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
        self._history: OrderedDict[tuple[str, int], _Series] = OrderedDict()
        self._ticks: dict[str, list[int]] = {}  # symbol -> its memoised ticks, ascending
        self._dates: dict[str, str] = {}  # the interned date strings
        self._ref_until: dict[str, str | None] = {}  # pair -> the until of its memoised entry
        self.memo_bytes = 0

    @property
    def memo_entries(self) -> int:
        """How many histories are memoised (at most ``MEMO_TICKS`` per symbol)."""
        return len(self._history)

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
    ) -> History:
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
            # the reference rates do not move with the tick: one entry per pair, keyed by until
            key = (f"{pair}@ref", -1)
            hit = self._recall(key)
            if hit is not None and self._ref_until.get(pair) == until:
                return hit.pairs()
            try:
                bars = await self.reference.history_until(pair, until, HISTORY_BARS)
            except MarketDataError:
                bars = []
            if bars:
                self._ref_until[pair] = until
                return self._remember(key, [(b.date, b.close) for b in bars]).pairs()
        raise FxUnavailable(f"no exchange-rate history for {pair}")

    def _recall(self, key: tuple[str, int]) -> _Series | None:
        hit = self._history.get(key)
        if hit is not None:
            self._history.move_to_end(key)
        return hit

    def _remember(self, key: tuple[str, int], bars: Sequence[tuple[str, float]]) -> _Series:
        """Memoise ``bars`` under ``key`` (symbol, tick), then evict: the symbol's oldest ticks
        beyond ``MEMO_TICKS``, then the least recently used entries beyond ``MEMO_BYTES``."""
        intern = self._dates
        if len(intern) > _DATES_INTERNED:
            intern.clear()  # only sharing is lost: entries keep their strings
        dates = tuple(intern.setdefault(d, d) for d, _ in bars)
        entry = _Series(dates, np.fromiter((c for _, c in bars), np.float64, len(bars)))
        self._forget(key)
        self._history[key] = entry
        self.memo_bytes += entry.nbytes
        symbol, tick = key
        ticks = self._ticks.setdefault(symbol, [])
        ticks.append(tick)
        ticks.sort()
        while len(ticks) > MEMO_TICKS:
            self._forget((symbol, ticks[0]))
        while self.memo_bytes > MEMO_BYTES and len(self._history) > 1:
            self._forget(next(iter(self._history)))
        return entry

    def _forget(self, key: tuple[str, int]) -> None:
        entry = self._history.pop(key, None)
        if entry is None:
            return
        self.memo_bytes -= entry.nbytes
        symbol, tick = key
        ticks = self._ticks[symbol]
        ticks.remove(tick)
        if not ticks:
            del self._ticks[symbol]

    async def history(self, symbol: str, tick: int) -> History:
        """Up to 253 (date, adjusted close) pairs ending at ``tick``, oldest first."""
        key = (symbol, tick)
        hit = self._recall(key)
        if hit is not None:
            return hit.pairs()
        if self.source is not None:
            bars = self.source.history(symbol, tick, HISTORY_BARS)
        else:
            assert self.feed is not None
            bars = await self.feed.history(symbol, HISTORY_BARS, tick=tick)
        return self._remember(key, [(b.date, b.adj_close) for b in bars]).pairs()

    async def histories(self, symbols: Iterable[str], tick: int) -> dict[str, History]:
        syms = sorted(set(symbols))
        try:
            got = await asyncio.gather(*(self.history(s, tick) for s in syms))
        except MarketDataError:
            raise
        return dict(zip(syms, got, strict=True))
