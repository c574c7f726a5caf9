"""Adapt a tick-addressed market (``simulated``, ``replay``) to the ``QuoteProvider`` port."""

from __future__ import annotations

from datetime import UTC, datetime

from marketpulse.errors import PermanentSourceError
from marketpulse.market.ports import ReportsSplits, TickSource
from marketpulse.market.quotes import Bar, Split, StockData


def bar_time(bar: Bar) -> datetime:
    """The bar's trading day as a UTC datetime at midnight."""
    return datetime.strptime(bar.date, "%Y-%m-%d").replace(tzinfo=UTC)


def quote_of_bar(
    symbol: str,
    bar: Bar,
    previous_close: float | None,
    *,
    source: str,
    currency: str,
    splits: tuple[Split, ...] = (),
) -> StockData:
    """The quote a daily bar makes: price = close, stamped at the bar's day, ``close`` and
    ``previous_close`` the previous bar's close (the bar's own without one). The one
    construction of a quote from a bar: the tick providers' quotes and the alert backtest's
    (``alerts/backtest.py``) replayed history are the same quotes."""
    return StockData(
        symbol=symbol,
        price=bar.close,
        volume=bar.volume,
        timestamp=bar_time(bar),
        high=bar.high,
        low=bar.low,
        open=bar.open,
        close=previous_close if previous_close is not None else bar.close,
        source=source,
        previous_close=previous_close,
        currency=currency,
        splits=splits,
    )


class TickQuoteProvider:
    """Quotes are the bar at the tick: price = close, previous_close = the previous tick's close;
    a source that reports splits (``ReportsSplits``) has the quote carry them.

    Pure and instantaneous (the sources compute in memory), so it runs on the loop.
    """

    live = False

    def __init__(self, source: TickSource) -> None:
        self._source = source
        self.name = source.name
        self._splits = source if isinstance(source, ReportsSplits) else None

    def knows(self, symbol: str) -> bool:
        """Whether the source has data for ``symbol`` (``symbol`` upper-cased)."""
        return self._source.knows(symbol)

    async def quote(self, symbol: str, tick: int) -> StockData:
        bar = self._source.bar(symbol, tick)
        previous: float | None = None
        if tick > 0:
            try:
                previous = self._source.bar(symbol, tick - 1).close
            except PermanentSourceError:
                previous = None  # the symbol's first bar: nothing before it
        return quote_of_bar(
            symbol,
            bar,
            previous,
            source=self.name,
            currency=self._source.currency(symbol),
            splits=self._splits.splits(symbol, tick) if self._splits is not None else (),
        )

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        return self._source.history(symbol, tick, n)
