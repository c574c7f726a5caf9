"""IndicatorFeed on the replay market through the real DataFetcher: books only for the symbols
wanted, loaded once from the completed sessions before the quote's, equal to the batch
reference; a history that cannot be had is retried after a backoff, not at every quote."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np
import pytest

from marketpulse.alerts.engine import AlertManager, IndicatorSource
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.indicator_feed import IndicatorFeed, history_bars
from marketpulse.alerts.indicators import IndicatorBook
from marketpulse.alerts.memory_store import MemoryAlertStore
from marketpulse.alerts.rules import AlertCondition, Indicator
from marketpulse.errors import QuoteUnavailable
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import ReplaySource
from marketpulse.market.providers.replay import load_stock_series
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.quotes import Bar, StockData
from support.fakes import FakeTime
from support.indicator_reference import Spec, close_enough, reference

FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)  # no provider rate limit in tests
START = "2011-03-01"
SPECS = [
    Spec("rsi", 14),
    Spec("ema", 50),
    Spec("price_vs_sma", 20),
    Spec("ma_cross", fast=20, slow=50, average="sma"),
    Spec("change_sessions", 10),
    Spec("from_52w_high"),
    Spec("from_52w_low"),
    Spec("drawdown", 60),
]
FEED_LOG = "marketpulse.alerts.indicator_feed"


def replay() -> tuple[ReplaySource, ManualClock, DataFetcher]:
    src = ReplaySource(start=START, step=1)
    clock = ManualClock(0)
    return src, clock, DataFetcher([TickQuoteProvider(src)], clock=clock, policy=FAST)


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[FiredAlert] = []

    async def send(self, alert: FiredAlert) -> None:
        self.seen.append(alert)


class FlakyHistory:
    """The fetcher as a QuoteFeed whose history fails while ``fail`` is set (or waits for
    ``gate`` when one is given): a port of ours, faked around the real fetcher."""

    def __init__(self, inner: DataFetcher) -> None:
        self.inner = inner
        self.fail = False
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def fetch_stock_data(self, symbol: str, *, tick: int | None = None) -> StockData:
        return await self.inner.fetch_stock_data(symbol, tick=tick)

    async def fetch_batch_data(
        self, symbols: Sequence[str], *, tick: int | None = None
    ) -> dict[str, StockData]:
        return await self.inner.fetch_batch_data(symbols, tick=tick)

    async def history(self, symbol: str, n: int = 253, *, tick: int | None = None) -> list[Bar]:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise QuoteUnavailable(f"no history for {symbol}: the test's outage")
        return await self.inner.history(symbol, n, tick=tick)


async def test_books_equal_the_batch_reference_over_a_year_of_replay() -> None:
    """The monitor evaluates ticks from its cursor, so the fetcher's clock may be ahead of the
    quote: the history it answers then holds later sessions, which the book must not see."""
    _, clock, fetcher = replay()
    feed = IndicatorFeed(fetcher)
    port: IndicatorSource = feed  # the engine's port (mypy checks the signatures)
    assert port is feed
    symbols = ("AAPL", "IBM", "MSFT")
    for sym in symbols:
        feed.want(sym, SPECS)
    n, lag = history_bars(SPECS), 3
    before = n - 1 - lag  # the history at tick `lag` ends there: its last 1 + lag bars go
    refs: dict[tuple[str, Indicator], np.ndarray] = {}
    for sym in symbols:
        s = load_stock_series()[sym]
        i0 = int(np.searchsorted(s.dates, np.datetime64(START)))
        x = s.close[i0 - before : i0 + 260]
        for spec in SPECS:
            refs[sym, spec] = reference(spec, x)
    checked = 0
    for t in range(260):
        clock.set(t + lag)
        for sym in symbols:
            quote = await fetcher.fetch_stock_data(sym, tick=t)
            book = await feed.observe(quote)
            assert book is not None
            assert book.session_date == quote.timestamp.date().isoformat()
            again = await feed.observe(quote)  # the same session again: replaced, not added
            assert again is book
            for spec in SPECS:
                want = refs[sym, spec][before + t]
                assert close_enough(book.value(spec), want), (sym, spec, t)
                checked += 1
    assert feed.loads == len(symbols)  # each book loaded once
    assert len(feed) == len(symbols)
    assert checked == 260 * len(symbols) * len(SPECS)


async def test_a_missing_history_is_retried_after_a_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, clock, fetcher = replay()
    flaky = FlakyHistory(fetcher)
    flaky.fail = True
    time = FakeTime()
    feed = IndicatorFeed(flaky, monotonic=time.now)
    feed.want("AAPL", SPECS)
    caplog.set_level(logging.WARNING, FEED_LOG)

    async def step() -> IndicatorBook | None:
        clock.advance()
        time.t += 1.0
        return await feed.observe(await fetcher.fetch_stock_data("AAPL"))

    assert await feed.observe(await fetcher.fetch_stock_data("AAPL")) is None
    assert flaky.calls == 1
    for _ in range(4):  # within the first wait (5 s): no history asked
        assert await step() is None
    assert flaky.calls == 1
    assert await step() is None  # 5 s: asked again, fails again; next wait 10 s
    assert flaky.calls == 2
    flaky.fail = False
    for _ in range(9):
        assert await step() is None
    assert flaky.calls == 2
    book = await step()  # 15 s: loaded
    assert book is not None and flaky.calls == 3
    lines = [r.getMessage() for r in caplog.records if r.name == FEED_LOG]
    assert len(lines) == 2
    assert "AAPL" in lines[0] and "attempt 1" in lines[0] and "test's outage" in lines[0]
    assert "attempt 2" in lines[1] and "again in 10 s" in lines[1]
    assert book.value(Spec("rsi", 14)) is not None


async def test_books_only_for_wanted_symbols_and_a_removal_path() -> None:
    _, clock, fetcher = replay()
    flaky = FlakyHistory(fetcher)
    feed = IndicatorFeed(flaky)
    feed.want("AAPL", SPECS)
    assert await feed.observe(await fetcher.fetch_stock_data("MSFT")) is None
    assert flaky.calls == 0  # no book, no history for a symbol without indicator alerts
    book = await feed.observe(await fetcher.fetch_stock_data("AAPL"))
    assert book is not None and len(feed) == 1 and flaky.calls == 1
    feed.want("AAPL", list(reversed(SPECS)))  # the same specs: the book stays
    assert feed.book("AAPL") is book
    feed.want("AAPL", [Spec("sma", 5)])  # other specs: reloaded at the next quote
    assert feed.book("AAPL") is None
    clock.advance()
    other = await feed.observe(await fetcher.fetch_stock_data("AAPL"))
    assert other is not None and other is not book and flaky.calls == 2
    assert other.needs() == 252  # only what its specs need (the 52 weeks at least)
    feed.want("AAPL", [])  # the last indicator alert gone
    assert len(feed) == 0 and feed.symbols() == []
    assert await feed.observe(await fetcher.fetch_stock_data("AAPL")) is None
    assert flaky.calls == 2


async def test_a_drop_during_a_load_discards_the_book() -> None:
    _, _, fetcher = replay()
    flaky = FlakyHistory(fetcher)
    flaky.gate = asyncio.Event()
    feed = IndicatorFeed(flaky)
    feed.want("IBM", SPECS)
    quote = await fetcher.fetch_stock_data("IBM")
    task = asyncio.create_task(feed.observe(quote))
    await asyncio.wait_for(flaky.entered.wait(), 5)
    feed.drop("IBM")
    flaky.gate.set()
    assert await asyncio.wait_for(task, 5) is None
    assert len(feed) == 0 and feed.book("IBM") is None


async def test_the_engine_fires_rsi_crossings_of_the_reference() -> None:
    """Through the engine (in memory) with the feed as its IndicatorSource: an RSI(14)
    crosses_above 70 alert fires exactly where the reference RSI crosses 70 from below."""
    _, clock, fetcher = replay()
    feed = IndicatorFeed(fetcher)
    rec = Recorder()
    mgr = AlertManager(MemoryAlertStore(), [rec], indicators=feed)
    rsi = Indicator(kind="rsi", period=14)
    alert = AlertCondition.model_validate(
        {"symbol": "AAPL", "alert_type": "indicator", "indicator": {"kind": "rsi"},
         "comparison": "crosses_above", "threshold": 70}
    )  # fmt: skip
    await mgr.add_alert(alert)
    assert feed.symbols() == ["AAPL"]
    s = load_stock_series()["AAPL"]
    i0 = int(np.searchsorted(s.dates, np.datetime64(START)))
    before = history_bars([rsi]) - 1
    ref = reference(rsi, s.close[i0 - before : i0 + 260])[before:]
    for t in range(260):
        clock.set(t)
        await mgr.check_alerts(await fetcher.fetch_stock_data("AAPL"), obs=t + 1)
    want = [t + 1 for t in range(1, 260) if ref[t] >= 70 > ref[t - 1]]
    assert [f.observation for f in rec.seen] == want
    assert len(want) >= 2  # the year really crosses 70 more than once
    await mgr.remove_alert(alert.id)
    assert feed.symbols() == [] and len(feed) == 0  # the engine drops the symbol's book
