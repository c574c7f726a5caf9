"""The seed's classes built without arguments use the service's settings, read at that moment.

``CacheManager()`` and ``AlertManager()`` go to ``MARKETPULSE_REDIS_URL`` (the test Redis here),
``DataFetcher()`` follows ``MARKETPULSE_DATA_SOURCE`` and the market settings; given explicit
arguments they read no settings at all (an invalid environment does not bother them).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.memory_store import MemoryAlertStore
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.cache import CacheManager
from marketpulse.market.clock import ManualClock, WallTickClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.quotes import StockData

AAPL = AlertCondition(
    symbol="AAPL", alert_type=AlertType.PRICE_THRESHOLD, threshold=150.0, comparison="above"
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> pytest.MonkeyPatch:
    for name in ("CACHE_URL", "DATA_SOURCE", "SEED", "MARKET_INTERVAL", "CACHE_TTL"):
        monkeypatch.delenv(f"MARKETPULSE_{name}", raising=False)
    monkeypatch.setenv("MARKETPULSE_REDIS_URL", redis_url)
    return monkeypatch


async def test_cache_manager_uses_the_configured_redis_and_ttl(
    env: pytest.MonkeyPatch, redis_client: Redis, redis_url: str
) -> None:
    env.setenv("MARKETPULSE_CACHE_TTL", "77")
    cache = CacheManager()
    assert cache.url == redis_url
    assert cache.ttl == 77
    await cache.connect()
    try:
        quote = await TickQuoteProvider(SimulatedSource(seed=1)).quote("AAPL", 3)
        await cache.set_stock_data("AAPL", quote)
        assert await redis_client.ttl(keys.quote_cache("AAPL")) == 77
        got = await cache.get_stock_data("AAPL")
        assert isinstance(got, StockData)
        assert got.price == quote.price
    finally:
        await cache.close()


def test_cache_manager_prefers_the_cache_url(env: pytest.MonkeyPatch) -> None:
    env.setenv("MARKETPULSE_CACHE_URL", "redis://10.1.2.3:6390/2")
    assert CacheManager().url == "redis://10.1.2.3:6390/2"
    assert CacheManager("redis://:secret@h:1/0").url == "redis://h:1/0"  # never the password


async def test_alert_manager_keeps_conditions_and_history_in_the_configured_redis(
    env: pytest.MonkeyPatch, redis_client: Redis, redis_url: str
) -> None:
    manager = AlertManager()
    assert isinstance(manager.store, RedisAlertStore)
    assert manager.url == redis_url
    try:
        await manager.add_alert(AAPL)
        assert await redis_client.hexists(keys.ALERTS, AAPL.id)
        quote = (await TickQuoteProvider(SimulatedSource(seed=43)).quote("AAPL", 3)).model_copy(
            update={"price": 151.0}
        )
        [fired] = await manager.check_alerts(quote, obs=3)
        assert fired.alert_id == AAPL.id
        assert await redis_client.xlen(keys.ALERT_HISTORY) == 1
        # another process (a second manager) sees the same conditions and history
        other = AlertManager()
        assert [a.id for a in await other.list_alerts()] == [AAPL.id]
        assert [f.id for f in await other.history()] == [fired.id]
        await other.aclose()
    finally:
        await manager.aclose()


async def test_memory_only_when_asked_for() -> None:
    manager = AlertManager.in_memory()
    assert isinstance(manager.store, MemoryAlertStore)
    assert manager.url is None
    await manager.add_alert(AAPL)
    assert [a.id for a in await manager.list_alerts()] == [AAPL.id]
    await manager.aclose()  # nothing to release: a no-op


def test_data_fetcher_follows_the_configured_market(env: pytest.MonkeyPatch) -> None:
    env.setenv("MARKETPULSE_DATA_SOURCE", "replay,simulated")
    env.setenv("MARKETPULSE_MARKET_INTERVAL", "0.25")
    fetcher = DataFetcher()
    assert [g.name for g in fetcher.guards] == ["replay", "simulated", "ecb"]  # ecb: FX only
    assert isinstance(fetcher.clock, WallTickClock)
    assert fetcher.clock._interval_s == 0.25
    assert not fetcher.live


async def test_the_seed_of_the_simulated_market_applies(env: pytest.MonkeyPatch) -> None:
    env.setenv("MARKETPULSE_SEED", "43")
    a = await DataFetcher(clock=ManualClock(3)).fetch_stock_data("AAPL")
    b = await TickQuoteProvider(SimulatedSource(seed=43)).quote("AAPL", 3)
    assert a.price == b.price


def test_explicit_arguments_read_no_settings(
    monkeypatch: pytest.MonkeyPatch, redis_boundary: RedisClient
) -> None:
    monkeypatch.setenv("MARKETPULSE_DATA_SOURCE", "no-such-source")  # Settings() would refuse
    with pytest.raises(ValidationError, match="unknown data source"):
        CacheManager()
    CacheManager(redis=redis_boundary)
    CacheManager("redis://127.0.0.1:1/0")
    DataFetcher([TickQuoteProvider(SimulatedSource(seed=1))])
    AlertManager(RedisAlertStore(redis_boundary))
    AlertManager(redis=redis_boundary)
    AlertManager.in_memory()
