"""The monitor keeps the pace of a fast simulated market, and stops mid catch-up when told.

Both run on the service's own fetch policy (5 calls a second per provider, a burst of 10), not
the unlimited one the other monitor tests use: the e2e server's market ticks every 0.5 s and
the default watchlist has 5 symbols, which the rate limit used to cap at one tick a second,
so the monitor fell a tick further behind every second it ran.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.config import DEFAULT_WATCHLIST
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.quotes import StockData
from support.fakes import FakeTime


def monitor(redis: RedisClient, clock: ManualClock, time: FakeTime, **kw: Any) -> MonitorService:
    fetcher = DataFetcher(
        [TickQuoteProvider(SimulatedSource(seed=42))],
        clock=clock,
        policy=FetchPolicy(now=time.now, sleep=time.sleep),  # the default rate and burst
    )
    alerts = AlertManager(RedisAlertStore(redis), [])
    return MonitorService(fetcher, alerts, redis=redis, clock=clock, interval_s=0.01, **kw)


async def cursor(redis: Redis) -> int:
    return int(await redis.get(keys.MONITOR_CURSOR) or -1)


async def test_twenty_ticks_of_the_watchlist_never_wait_on_the_rate_limit(
    redis_boundary: RedisClient, redis_client: Redis
) -> None:
    clock, time = ManualClock(0), FakeTime()
    mon = monitor(redis_boundary, clock, time, watchlist=DEFAULT_WATCHLIST)
    n = len(DEFAULT_WATCHLIST)
    assert await mon.run_once() == n  # seeds the watchlist, evaluates tick 0
    clock.set(20)  # ten seconds of a 0.5 s market
    assert await mon.run_once() == 20 * n  # 100 quotes, ten times the burst
    assert await cursor(redis_client) == 20
    assert time.t == 0.0  # no quote waited for a token: the monitor is as fast as the market


async def test_a_stop_ends_a_catch_up_after_the_tick_being_evaluated(
    redis_boundary: RedisClient, redis_client: Redis
) -> None:
    clock, time = ManualClock(0), FakeTime()
    stop = asyncio.Event()
    seen: list[StockData] = []

    def on_quote(quote: StockData) -> None:
        seen.append(quote)
        if len(seen) == 5:  # tick 0, then ticks 1-4 of the catch-up: stop during tick 4
            stop.set()

    mon = monitor(redis_boundary, clock, time, on_quote=on_quote)
    await mon.add_symbol("AAPL")
    assert await mon.run_once() == 1
    clock.set(50)  # a backlog of 50 ticks, which the simulated market computes at once
    async with asyncio.timeout(10):
        await mon.run(stop)
    assert await cursor(redis_client) == 4  # not 50: the next poller resumes at tick 5
    assert len(seen) == 5
    assert await redis_client.exists(keys.MONITOR_LEASE) == 0  # released on the way out
