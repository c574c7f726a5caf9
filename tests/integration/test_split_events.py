"""Providers report split events (docs/alerts.md, Splits): the Yahoo chart adapter reads
``events.splits`` of a recorded chart into ``StockData.splits``."""

from __future__ import annotations

from marketpulse.market.providers.yahoo import YahooProvider
from marketpulse.market.quotes import Split


async def test_yahoo_reads_the_recorded_nvda_4_for_1_split(yahoo: YahooProvider) -> None:
    # the recorded chart lists {"numerator": 4.0, "denominator": 1.0} at 1626787800
    # (2021-07-20 09:30 New York): the ex-date in the exchange's zone
    q = await yahoo.quote("NVDA", 0)
    assert q.splits == (Split(date="2021-07-20", ratio=4.0),)
    assert q.price == 119.1  # the quote itself is read as before


async def test_a_chart_without_split_events_reports_none(yahoo: YahooProvider) -> None:
    q = await yahoo.quote("MSFT", 0)  # its chart lists dividends only
    assert q.splits == ()
    bars = await yahoo.history("MSFT", 0, 253)
    assert len(bars) == 127  # the action columns do not change the bars
