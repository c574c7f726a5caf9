"""The port every quote provider implements (live ones and tick-addressed ones alike)."""

from __future__ import annotations

from typing import Protocol

from marketpulse.market.quotes import Bar, StockData


class QuoteProvider(Protocol):
    """One source of quotes and daily history.

    ``tick`` addresses the market clock; live providers ignore it. ``live`` is False for
    tick-addressed providers, whose quotes may be cached only for the tick they were made at.
    Errors are ours: ``TransientSourceError`` (worth retrying), ``PermanentSourceError``.
    """

    name: str
    live: bool

    async def quote(self, symbol: str, tick: int) -> StockData: ...

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]: ...
