"""The seed's StockMonitor: monitoring runs in the background between start and stop.

Real Redis for the alerts and the cache; the market is our simulator on a manual clock, so a
tick happens when the test says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.stock_monitor import StockMonitor
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.cache import CacheManager
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.quotes import Bar, StockData
from support.fakes import Queued

FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)  # no provider rate limit in tests


class Broken:
    """A feed with a bug: the first fetch raises something that is not one of our errors."""

    clock = ManualClock(0)
    live = False

    async def fetch_stock_data(self, symbol: str, *, tick: int | None = None) -> StockData:
        raise RuntimeError("bug in the feed")

    async def fetch_batch_data(
        self, symbols: Sequence[str], *, tick: int | None = None
    ) -> dict[str, StockData]:
        raise NotImplementedError  # the monitor fetches one symbol at a time

    async def history(self, symbol: str, n: int = 253, *, tick: int | None = None) -> list[Bar]:
        raise NotImplementedError


def always(symbol: str) -> AlertCondition:
    return AlertCondition(
        symbol=symbol, alert_type=AlertType.PRICE_THRESHOLD, threshold=0, comparison="above"
    )


def build(redis: RedisClient, note: Queued) -> StockMonitor:
    fetcher = DataFetcher(
        [TickQuoteProvider(SimulatedSource(seed=42))], clock=ManualClock(3), policy=FAST
    )
    alerts = AlertManager(RedisAlertStore(redis), [note])
    return StockMonitor(fetcher, CacheManager(redis=redis), alerts, interval_s=0.01)


async def test_start_returns_and_the_loop_runs_until_stop(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    note = Queued()
    monitor = build(redis_boundary, note)
    await monitor.alert_manager.add_alert(always("AAPL"))
    before = asyncio.all_tasks()
    async with asyncio.timeout(10):
        await monitor.start_monitoring(["AAPL", "TCS.NS"])  # returns: the loop is in the back
        assert monitor.running
        fired = await note.q.get()  # the loop fires while this coroutine goes on
        assert fired.symbol == "AAPL"
        await monitor.stop_monitoring()
    assert not monitor.running
    assert asyncio.all_tasks() - before == set()  # nothing left behind
    assert await monitor.service.symbols() == ["AAPL", "TCS.NS"]
    assert await redis_client.exists(keys.quote_cache("AAPL"))  # the cache manager was used
    [entry] = await monitor.alert_manager.history()
    assert entry.symbol == "AAPL"


async def test_a_plain_stop_asks_and_awaiting_its_result_waits(redis_boundary: RedisClient) -> None:
    note = Queued()
    monitor = build(redis_boundary, note)
    await monitor.alert_manager.add_alert(always("AAPL"))
    async with asyncio.timeout(10):
        await monitor.start_monitoring(["AAPL"])
        await note.q.get()
        stopping = monitor.stop_monitoring()  # as the seed calls it: no await
        assert monitor.running  # asked, not yet stopped
        await stopping
    assert not monitor.running


async def test_async_with_stops_on_exit(redis_boundary: RedisClient) -> None:
    note = Queued()
    async with asyncio.timeout(10), build(redis_boundary, note) as monitor:
        await monitor.alert_manager.add_alert(always("GOOGL"))
        await monitor.start_monitoring(["GOOGL"])
        await note.q.get()
        assert monitor.running
    assert not monitor.running


async def test_start_while_running_adds_symbols_to_the_same_loop(
    redis_boundary: RedisClient,
) -> None:
    note = Queued()
    async with asyncio.timeout(10), build(redis_boundary, note) as monitor:
        await monitor.start_monitoring(["AAPL"])
        task = monitor._task
        await monitor.start_monitoring(["MSFT"])
        assert monitor._task is task
        assert await monitor.service.symbols() == ["AAPL", "MSFT"]


async def test_an_error_that_ends_the_loop_is_logged_and_raised_by_stop(
    caplog: pytest.LogCaptureFixture, redis_boundary: RedisClient
) -> None:
    alerts = AlertManager(RedisAlertStore(redis_boundary), [])
    monitor = StockMonitor(Broken(), None, alerts, interval_s=0.01)
    caplog.set_level(logging.ERROR, logger="marketpulse.alerts.stock_monitor")
    async with asyncio.timeout(10):
        await monitor.start_monitoring(["AAPL"])
        task = monitor._task
        assert task is not None
        await asyncio.wait({task})
        with pytest.raises(ExceptionGroup) as raised:  # from the cycle's task group
            await monitor.stop_monitoring()
    assert raised.group_contains(RuntimeError, match="bug in the feed")
    [record] = caplog.records
    assert record.getMessage() == "the monitoring loop ended with an error"
    assert record.exc_info is not None
    monitor.stop_monitoring()  # raised once: a second stop is a no-op


async def test_a_plain_stop_after_the_loop_failed_raises_at_once(
    redis_boundary: RedisClient,
) -> None:
    monitor = StockMonitor(Broken(), None, AlertManager(RedisAlertStore(redis_boundary), []))
    async with asyncio.timeout(10):
        await monitor.start_monitoring(["AAPL"])
        assert monitor._task is not None
        await asyncio.wait({monitor._task})
    with pytest.raises(ExceptionGroup) as raised:
        monitor.stop_monitoring()
    assert raised.group_contains(RuntimeError, match="bug in the feed")
