"""Market hours with the quote cache in Redis (market/fetcher.py): the closing print is
fetched once, and once for every instance, since its fetch time is in the shared cache; a
closed exchange costs no call for the monitor, on the service's Redis stores.

A manual wall clock drives the fetchers and the cache; the provider is a counting fake.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.config import Settings
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.cache import CacheManager
from marketpulse.market.calendar import Calendars
from marketpulse.market.fetcher import DataFetcher, build_fetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.quotes import StockData
from support.fakes import CountingLive, ManualWall, Queued

FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)
FRIDAY_CLOSE = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)  # NYSE, 16:00 New York


def fetcher(redis: RedisClient, wall: ManualWall, provider: CountingLive) -> DataFetcher:
    cache = CacheManager(redis=redis, now=wall.now)
    return DataFetcher([provider], cache=cache, policy=FAST, wall=wall.now, calendars=Calendars())


async def test_the_closing_print_is_fetched_once_for_every_instance(
    redis_boundary: RedisClient,
) -> None:
    wall = ManualWall(FRIDAY_CLOSE - timedelta(minutes=1))
    provider = CountingLive(wall)
    first, second = fetcher(redis_boundary, wall, provider), fetcher(redis_boundary, wall, provider)
    during = await first.fetch_stock_data("AAPL")
    assert during.market_open is True and during.session_date == "2026-12-04"
    wall.set(FRIDAY_CLOSE + timedelta(seconds=5))
    settling = await first.fetch_stock_data("AAPL")  # the closing price is not out yet
    assert len(provider.calls) == 1
    assert settling.timestamp == during.timestamp and settling.market_open is False
    wall.set(FRIDAY_CLOSE + timedelta(minutes=6))
    closing = await first.fetch_stock_data("AAPL")  # the fresh cache entry predates the close
    assert len(provider.calls) == 2
    assert closing.market_open is False and closing.timestamp == wall.utc()
    wall.set(FRIDAY_CLOSE + timedelta(hours=30))  # Saturday: another instance asks
    served = await second.fetch_stock_data("AAPL")
    assert len(provider.calls) == 2
    assert (served.price, served.timestamp) == (closing.price, closing.timestamp)
    assert served.market_open is False and not served.stale
    assert served.session_date == "2026-12-04"
    assert served.next_open == datetime(2026, 12, 7, 14, 30, tzinfo=UTC)
    assert served.age_s == 30 * 3600 - 6 * 60
    assert second.metrics()["closed_served"] == 1


async def test_the_monitor_makes_no_call_for_a_closed_exchange(
    redis_boundary: RedisClient,
) -> None:
    wall = ManualWall(datetime(2026, 12, 5, 9, 0, tzinfo=UTC))  # Saturday
    provider = CountingLive(wall)
    seen: list[StockData] = []
    monitor = MonitorService(
        fetcher(redis_boundary, wall, provider),
        AlertManager(RedisAlertStore(redis_boundary), [Queued()]),
        redis=redis_boundary,
        on_quote=seen.append,
    )
    for symbol in ("AAPL", "TCS.NS"):
        await monitor.add_symbol(symbol)
    for _ in range(32):  # Saturday 09:00 to Sunday 23:45, every 75 minutes
        await monitor.run_once()
        wall.advance(75 * 60)
    assert sorted(s for s, _ in provider.calls) == ["AAPL", "TCS.NS"]  # each one first quote
    assert all(at == datetime(2026, 12, 5, 9, 0, tzinfo=UTC) for _, at in provider.calls)
    assert len(seen) == 64 and not any(q.market_open for q in seen)
    assert {q.session_date for q in seen} == {"2026-12-04"}
    # Monday: NSE opens at 03:45 UTC. The cache entry of Saturday is still within its TTL
    # (Redis counts real seconds), but it belongs to Friday's session: NSE is asked again.
    wall.set(datetime(2026, 12, 7, 3, 45, tzinfo=UTC))
    await monitor.run_once()
    assert [s for s, _ in provider.calls[2:]] == ["TCS.NS"]
    monday = {q.symbol: q for q in seen[-2:]}
    assert monday["TCS.NS"].market_open and monday["TCS.NS"].session_date == "2026-12-07"
    assert not monday["AAPL"].market_open and monday["AAPL"].session_date == "2026-12-04"


async def test_the_service_keeps_market_hours_for_a_live_chain_unless_told_not_to(
    redis_boundary: RedisClient, tmp_path: Path
) -> None:
    cases = [("nse,simulated", True, True), ("nse", False, False), ("simulated,nse", True, False)]
    for source, market_hours, gated in cases:
        settings = Settings(data_source=source, data_dir=str(tmp_path), market_hours=market_hours)
        built = build_fetcher(settings, redis_boundary, None)
        assert (built.calendars is not None) == gated, source
        await built.close()
