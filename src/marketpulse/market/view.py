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

from marketpulse.errors import MarketDataError, PermanentSourceError, QuoteUnavailable
from marketpulse.market.ports import QuoteFeed, TickSource

HISTORY_BARS = 253  # 252 returns: docs/metrics.md
_MEMO_LIMIT = 4096


class Market:
    """Prices and adjusted-close histories at a tick, memoised per (symbol, tick)."""

    def __init__(self, source: TickSource | None = None, feed: QuoteFeed | None = None) -> None:
        if source is None and feed is None:
            raise ValueError("a market needs a tick source or a live feed")
        self.source = source
        self.feed = feed
        self._history: OrderedDict[tuple[str, int], tuple[tuple[str, float], ...]] = OrderedDict()

    @property
    def name(self) -> str:
        return self.source.name if self.source is not None else "live"

    def knows(self, symbol: str) -> bool:
        return self.source.knows(symbol) if self.source is not None else True

    async def prices(self, symbols: Iterable[str], tick: int) -> dict[str, float]:
        """Close of every symbol at ``tick``. Raises QuoteUnavailable naming the missing ones."""
        wanted = sorted(set(symbols))
        if self.source is not None:
            src = self.source
            try:
                return {s: src.bar(s, tick).close for s in wanted}
            except PermanentSourceError as exc:
                raise QuoteUnavailable(str(exc)) from exc
        assert self.feed is not None
        quotes = await self.feed.fetch_batch_data(wanted, tick=tick)
        missing = [s for s in wanted if s not in quotes]
        if missing:
            raise QuoteUnavailable(f"no price for {', '.join(missing)}")
        return {s: quotes[s].price for s in wanted}

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
        self._history[key] = value
        if len(self._history) > _MEMO_LIMIT:
            self._history.popitem(last=False)
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
