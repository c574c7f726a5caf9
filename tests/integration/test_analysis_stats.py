"""The analysis engine's market statistics: one computation per (tickers, tick), shared by the
runs that need it at once, and never a cancelled or failed one kept."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import pytest

from marketpulse.config import MetricDelay
from marketpulse.errors import TransientSourceError
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.quotes import Bar, StockData
from marketpulse.market.view import Market
from marketpulse.sessions.analysis import AnalysisEngine
from marketpulse.sessions.store import SessionStore

TICKERS = ("AAPL", "MSFT")
DEADLINE = 10.0


class GatedFeed:
    """Simulated histories that wait for ``gate``; counts calls, can fail on demand."""

    def __init__(self) -> None:
        self.source = SimulatedSource(seed=3)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls: Counter[str] = Counter()
        self.fail = False

    async def fetch_stock_data(self, symbol: str, *, tick: int | None = None) -> StockData:
        raise NotImplementedError  # the statistics need histories only

    async def fetch_batch_data(
        self, symbols: Sequence[str], *, tick: int | None = None
    ) -> dict[str, StockData]:
        raise NotImplementedError  # the statistics need histories only

    async def history(self, symbol: str, n: int = 253, *, tick: int | None = None) -> list[Bar]:
        self.calls[symbol] += 1
        self.entered.set()
        await self.gate.wait()
        if self.fail:
            raise TransientSourceError(f"no history for {symbol}")
        return self.source.history(symbol, tick or 0, n)


@pytest.fixture
async def engine(redis_boundary: RedisClient) -> AsyncIterator[tuple[AnalysisEngine, GatedFeed]]:
    feed = GatedFeed()
    store = SessionStore(redis_boundary, ttl_s=60)
    eng = AnalysisEngine(store, Market(feed=feed), delay=MetricDelay(0.0, 0.0))
    yield eng, feed
    await eng.shutdown()


async def test_runs_starting_together_share_one_computation(
    engine: tuple[AnalysisEngine, GatedFeed],
) -> None:
    eng, feed = engine
    async with asyncio.timeout(DEADLINE):
        tasks = [asyncio.ensure_future(eng.stats(TICKERS, 300)) for _ in range(20)]
        await feed.entered.wait()
        feed.gate.set()
        results = await asyncio.gather(*tasks)
    assert all(r is results[0] for r in results)
    assert feed.calls == Counter(dict.fromkeys(TICKERS, 1))


async def test_a_cancelled_first_run_does_not_cancel_the_ones_waiting_on_it(
    engine: tuple[AnalysisEngine, GatedFeed],
) -> None:
    eng, feed = engine
    async with asyncio.timeout(DEADLINE):
        # Both start in this order; ``entered`` is set only by the first one's history fetch,
        # which runs after ``waiting`` took its first step: it is then awaiting the shared result.
        first = asyncio.ensure_future(eng.stats(TICKERS, 300))
        waiting = asyncio.ensure_future(eng.stats(TICKERS, 300))
        await feed.entered.wait()
        assert feed.calls == Counter(dict.fromkeys(TICKERS, 1))  # one computation under way
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        feed.gate.set()
        stats = await waiting
    assert stats is await eng.stats(TICKERS, 300)  # kept once computed
    assert feed.calls == Counter(dict.fromkeys(TICKERS, 2))  # the waiter computed it again


async def test_a_failure_reaches_every_waiter_and_is_not_kept(
    engine: tuple[AnalysisEngine, GatedFeed],
) -> None:
    eng, feed = engine
    feed.fail = True
    async with asyncio.timeout(DEADLINE):
        tasks = [asyncio.ensure_future(eng.stats(TICKERS, 300)) for _ in range(5)]
        await feed.entered.wait()
        feed.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, TransientSourceError) for r in results)
        feed.fail = False
        await eng.stats(TICKERS, 300)  # tried again, not the memoised failure
    assert feed.calls == Counter(dict.fromkeys(TICKERS, 2))


async def test_the_memo_keeps_the_latest_ticks_within_its_bytes(
    engine: tuple[AnalysisEngine, GatedFeed], monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketpulse.sessions import analysis

    eng, feed = engine
    feed.gate.set()
    async with asyncio.timeout(DEADLINE):
        first = await eng.stats(TICKERS, 300)
        for tick in range(300, 320):
            await eng.stats(TICKERS, tick)
            await eng.stats(("AAPL",), tick)
    assert eng.stats_memo_entries == 2 * (analysis.STATS_TICKS + 1)  # ticks 315 .. 319
    one = eng.stats_memo_bytes // eng.stats_memo_entries
    monkeypatch.setattr(analysis, "STATS_MEMO_BYTES", 3 * one)
    async with asyncio.timeout(DEADLINE):
        await eng.stats(("AAPL", "MSFT", "IBM"), 320)
    assert 0 < eng.stats_memo_bytes <= 3 * one
    # what is kept is exact: a recomputation at a dropped tick equals the first one
    async with asyncio.timeout(DEADLINE):
        again = await eng.stats(TICKERS, 300)
    assert again is not first and again.momentum_12_1 == first.momentum_12_1
    assert again.cov is not None and first.cov is not None
    assert again.n_returns == first.n_returns and (again.cov == first.cov).all()
