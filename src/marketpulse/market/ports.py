"""The market's ports: the three ways the rest of the service is handed market data.

- ``TickSource``: a deterministic market addressed by tick (``simulated``, ``replay``). Pure
  and synchronous: the same (symbol, tick) always gives the same bar, so every instance
  computes the same prices. The sessions' ``Market`` reads it directly in tick mode.
- ``QuoteProvider``: one upstream of quotes and daily history (``yahoo``, ``nse``, or a tick
  source adapted by ``TickQuoteProvider``). Asynchronous and fallible; the ``DataFetcher`` puts
  each behind the fetch policy (retries, rate limit, breaker) and chains them.
- ``QuoteFeed``: what the features need of the ``DataFetcher`` itself (validated, cached quotes
  with fallback): the alert monitor's single quotes, the sessions' live batches and histories.
  Tests hand either consumer a small fake of their own instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from marketpulse.market.quotes import Bar, Split, StockData


class TickSource(Protocol):
    """A deterministic market addressed by tick.

    ``bar(symbol, tick)`` is the bar the market shows at that tick; ``history(symbol, tick, n)``
    is up to ``n`` bars ending at that tick (inclusive), oldest first. Unknown symbols raise
    ``PermanentSourceError``; a tick before the symbol's first bar raises it too.
    ``currency(symbol)`` is the ISO 4217 code the symbol's prices are in (a pair symbol's
    quote currency, ``market/fx.py``).
    """

    name: str

    def knows(self, symbol: str) -> bool: ...

    def bar(self, symbol: str, tick: int) -> Bar: ...

    def history(self, symbol: str, tick: int, n: int) -> list[Bar]: ...

    def currency(self, symbol: str) -> str: ...


@runtime_checkable
class ReportsSplits(Protocol):
    """A tick source that reports splits (the simulated market's test schedule): the splits of
    ``symbol`` recent at ``tick`` (a live chart's window), oldest first, for the quote to carry."""

    def splits(self, symbol: str, tick: int) -> tuple[Split, ...]: ...


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


class DatedRates(QuoteProvider, Protocol):
    """Reference exchange rates with a history by date (the offline ECB rates): a rate source
    that does not move with the market tick, asked for the dates a history needs."""

    async def history_until(self, symbol: str, until: str | None, n: int) -> list[Bar]: ...


class QuoteFeed(Protocol):
    """Quotes and histories after the fetch policy, cache and fallback (the ``DataFetcher``).

    ``tick`` is the market tick to read at (None: the fetcher's clock). ``fetch_stock_data``
    raises ``ValidationFailed`` or ``QuoteUnavailable``; ``fetch_batch_data`` never raises for
    one symbol (it is absent from the result); ``history`` raises ``QuoteUnavailable``.
    """

    async def fetch_stock_data(self, symbol: str, *, tick: int | None = None) -> StockData: ...

    async def fetch_batch_data(
        self, symbols: Sequence[str], *, tick: int | None = None
    ) -> dict[str, StockData]: ...

    async def history(self, symbol: str, n: int = 253, *, tick: int | None = None) -> list[Bar]: ...
