"""A Redis that stops answering the monitor is logged once naming its URL, and once when back.

Real redis-servers only: a port where nothing listens, and a redis-server of this test's own
that it stops and starts again on the same port. Cycles are driven one at a time
(``MonitorService.cycle``), so "many cycles, one line" needs no waiting.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import pytest

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.stock_monitor import StockMonitor
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis, free_port
from marketpulse.market.cache import CacheManager
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider

OUTAGE_LOG = "marketpulse.infra.redis.outage"
FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)
SYMBOLS = ["AAPL", "MSFT", "GOOGL", "TCS.NS", "INFY.NS"]
UNREACHABLE = (
    r"monitor: Redis at {url} is unreachable \(ConnectionError: .+\); retrying every cycle, "
    r"logged once until it answers again"
)


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == OUTAGE_LOG]


@pytest.fixture
async def client(own_redis: EmbeddedRedis) -> AsyncIterator[RedisClient]:
    c = RedisClient.from_url(own_redis.url)
    try:
        yield c
    finally:
        await c.aclose()


def fetcher(clock: ManualClock) -> DataFetcher:
    return DataFetcher([TickQuoteProvider(SimulatedSource(seed=42))], clock=clock, policy=FAST)


async def test_the_seed_monitor_logs_a_stopped_redis_once_and_its_return_once(
    own_redis: EmbeddedRedis, client: RedisClient, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(10)
    alerts = AlertManager(RedisAlertStore(client), [])
    monitor = StockMonitor(fetcher(clock), CacheManager(redis=client), alerts)
    service = monitor.service
    await alerts.add_alert(
        AlertCondition(
            symbol="AAPL", alert_type=AlertType.PRICE_THRESHOLD, threshold=1e9, comparison="above"
        )
    )
    for s in SYMBOLS:
        await monitor.add_symbol(s)
    caplog.set_level(logging.INFO)
    assert await service.cycle() == len(SYMBOLS)

    own_redis.stop()
    for _ in range(5):  # five cycles over five symbols, each would have touched Redis
        clock.advance()
        assert await service.cycle() == 0
    url = own_redis.url
    [line] = outage_lines(caplog)  # one line for five cycles of five symbols
    assert re.fullmatch(UNREACHABLE.format(url=re.escape(url)), line), line
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name != OUTAGE_LOG]

    own_redis.start()  # same port, empty: the symbols are gone, the cycle still succeeds
    clock.advance()
    assert await service.cycle() == 0
    assert outage_lines(caplog)[1:] == [f"monitor: Redis at {url} answers again (5 failed "
                                        "operations meanwhile)"]  # fmt: skip
    clock.advance()
    await service.cycle()
    assert len(outage_lines(caplog)) == 2


async def test_a_cache_at_a_closed_port_is_logged_once_and_quotes_still_flow(
    caplog: pytest.LogCaptureFixture, redis_boundary: RedisClient
) -> None:
    clock = ManualClock(10)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    cache = CacheManager(dead)
    await cache.connect()
    try:
        alerts = AlertManager(RedisAlertStore(redis_boundary), [])
        service = MonitorService(fetcher(clock), alerts, clock=clock, cache=cache)
        for s in SYMBOLS:
            await service.add_symbol(s)
        caplog.set_level(logging.INFO)
        for _ in range(3):
            clock.advance()
            assert await service.cycle() == len(SYMBOLS)  # uncached, still evaluated
        [line] = outage_lines(caplog)
        assert re.fullmatch(UNREACHABLE.format(url=re.escape(dead)), line), line
        assert service.outages.down() == {dead}
    finally:
        await cache.close()


async def test_the_service_lease_and_cursor_redis_down_is_one_line(
    own_redis: EmbeddedRedis, client: RedisClient, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(10)
    alerts = AlertManager(RedisAlertStore(client), [])
    service = MonitorService(fetcher(clock), alerts, redis=client, clock=clock)
    await service.add_symbol("AAPL")
    assert await service.cycle() == 1
    caplog.set_level(logging.INFO)
    own_redis.stop()
    for _ in range(4):
        clock.advance()
        assert await service.cycle() == 0
    [line] = outage_lines(caplog)
    assert line.startswith(f"monitor: Redis at {own_redis.url} is unreachable")
    own_redis.start()
    clock.advance()
    await service.cycle()
    assert outage_lines(caplog)[1].startswith(f"monitor: Redis at {own_redis.url} answers again")
