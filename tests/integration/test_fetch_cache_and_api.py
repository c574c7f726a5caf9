"""The quote cache (one MGET / one pipeline, tick-scoped entries), validation, and the route."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from marketpulse.config import Settings
from marketpulse.errors import PermanentSourceError
from marketpulse.infra.http_errors import install_error_handlers
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.cache import CacheManager
from marketpulse.market.clock import ManualClock, RedisTickClock
from marketpulse.market.fetcher import DataFetcher, build_fetcher
from marketpulse.market.http import router
from marketpulse.market.providers.simulated import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.quotes import Bar, StockData
from support.asgi import with_state


def quote(symbol: str, price: float, source: str = "test") -> StockData:
    return StockData(
        symbol=symbol, price=price, volume=10, timestamp=datetime(2026, 1, 2, tzinfo=UTC),
        high=price * 1.01, low=price * 0.99, open=price, close=price, source=source,
    )  # fmt: skip


class CountingTicks(TickQuoteProvider):
    """The simulated market, counting how often it is asked."""

    def __init__(self) -> None:
        super().__init__(SimulatedSource(seed=3))
        self.calls = 0

    async def quote(self, symbol: str, tick: int) -> StockData:
        self.calls += 1
        return await super().quote(symbol, tick)


class Scripted:
    """A live provider we own that answers the prices it is given (None: unknown symbol)."""

    name = "scripted"
    live = True

    def __init__(self, prices: list[float | None]) -> None:
        self.prices = prices

    async def quote(self, symbol: str, tick: int) -> StockData:
        price = self.prices.pop(0)
        if price is None:
            raise PermanentSourceError("unknown")
        return quote(symbol, price, self.name)

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        raise PermanentSourceError("none")


async def commandstats(r: Redis) -> dict[str, int]:
    info = await r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def test_cache_round_trip_and_counters(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    cache = CacheManager(redis=redis_boundary)
    await cache.connect()
    assert await cache.get_stock_data("AAPL") is None
    await cache.set_stock_data("AAPL", quote("AAPL", 190.5), ttl=300)
    got = await cache.get_stock_data("AAPL")
    assert got is not None
    assert got.price == 190.5
    assert (cache.hits, cache.misses) == (1, 1)
    assert 0 < await redis_client.ttl(b"mp:cache:quote:AAPL") <= 300


async def test_batch_is_one_mget_and_one_pipeline(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    cache = CacheManager(redis=redis_boundary)
    symbols = [f"S{i}" for i in range(50)]
    await redis_client.config_resetstat()
    await cache.set_many({s: quote(s, 10.0 + i) for i, s in enumerate(symbols)}, ttl=60)
    got = await cache.get_many(symbols)
    stats = await commandstats(redis_client)
    assert len(got) == 50
    assert stats.get("mget") == 1
    assert "get" not in stats
    assert stats.get("set") == 50  # sent in one pipeline
    keys = cast(list[bytes], await redis_client.keys("*"))
    assert all(k.startswith(b"mp:cache:") for k in keys)


async def test_tick_quote_is_never_served_at_another_tick(redis_boundary: RedisClient) -> None:
    ticks = CountingTicks()
    clock = ManualClock(7)
    f = DataFetcher([ticks], cache=CacheManager(redis=redis_boundary), clock=clock)
    a = await f.fetch_stock_data("AAPL")
    assert (await f.fetch_stock_data("AAPL")).price == a.price
    assert ticks.calls == 1  # cached for tick 7
    clock.advance()
    b = await f.fetch_stock_data("AAPL")
    assert ticks.calls == 2  # tick 8: not the tick-7 entry
    assert b.price == (await ticks.quote("AAPL", 8)).price
    assert b.previous_close == a.price


async def test_redis_tick_clock(redis_client: Redis, redis_boundary: RedisClient) -> None:
    clock = RedisTickClock(redis_boundary)
    assert await clock.tick() == 0
    await redis_client.set(b"mp:market:tick", 12)
    assert await clock.tick() == 12


@pytest.mark.parametrize("bad", [math.nan, -1.0, 0.0, 100 * 190.0, 190.0 / 100])
async def test_insane_or_jumping_quotes_are_rejected(
    redis_client: Redis, bad: float, redis_boundary: RedisClient
) -> None:
    live = Scripted([190.0, bad])
    sim = TickQuoteProvider(SimulatedSource(seed=3))
    f = DataFetcher([live, sim], cache=CacheManager(redis=redis_boundary), clock=ManualClock())
    assert (await f.fetch_stock_data("AAPL")).source == "scripted"
    await redis_client.delete(b"mp:cache:quote:AAPL")
    assert (await f.fetch_stock_data("AAPL")).source == sim.name
    assert f.counters.rejected == 1


async def test_quotes_route(redis_boundary: RedisClient) -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    fetcher = DataFetcher(
        [Scripted([190.0, None])], cache=CacheManager(redis=redis_boundary), clock=ManualClock()
    )
    transport = httpx.ASGITransport(with_state(app, {"fetcher": fetcher}))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ok = await client.get("/api/quotes/AAPL")
        assert ok.status_code == 200
        body = ok.json()
        assert (body["symbol"], body["price"], body["source"], body["stale"]) == (
            "AAPL", 190.0, "scripted", False,
        )  # fmt: skip
        assert "age_s" in body
        bad = await client.get("/api/quotes/not a symbol")
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_symbol"
        gone = await client.get("/api/quotes/MSFT")
        assert gone.status_code == 503
        assert gone.json()["error"]["code"] == "quote_unavailable"


async def test_build_fetcher_chain_and_a_separate_cache_redis(
    redis_url: str, redis_client: Redis, redis_boundary: RedisClient, tmp_path: Path
) -> None:
    chain = Settings(redis_url=redis_url, data_source="yahoo,nse,simulated", data_dir=str(tmp_path))
    built = build_fetcher(chain, redis_boundary, None)
    assert [g.name for g in built.guards] == ["yahoo", "nse", "simulated", "ecb"]  # ecb: FX only
    from yfinance import cache

    # yfinance's caches go with the service's data, not the user's home
    assert cache._TzDBManager.get_location() == str(tmp_path / "yfinance")
    await built.close()
    cache_url = redis_url.rsplit("/", 1)[0] + "/1"  # another database: the cache's own Redis
    cache_redis = RedisClient.from_url(cache_url)
    try:
        settings = Settings(redis_url=redis_url, cache_url=cache_url, data_source="simulated")
        f = build_fetcher(settings, redis_boundary, cache_redis)
        await redis_client.set(keys.MARKET_TICK, 4)
        await f.fetch_stock_data("AAPL")
        assert await redis_client.keys("*") == [keys.MARKET_TICK.encode()]  # state untouched
        assert sorted(await cache_redis.call("KEYS", "*")) == sorted(
            [keys.tick_quote_cache("AAPL", 4).encode(), keys.last_good_quote("AAPL").encode()]
        )
        await f.close()
    finally:
        await cache_redis.aclose()


async def test_every_provider_attempt_is_logged_with_outcome_and_latency(
    caplog: pytest.LogCaptureFixture, redis_boundary: RedisClient
) -> None:
    f = DataFetcher(
        [Scripted([None]), Scripted([190.0])], cache=CacheManager(redis=redis_boundary),
        clock=ManualClock(),
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="marketpulse.market.provider_guard"):
        await f.fetch_stock_data("AAPL")
    calls = [r for r in caplog.records if r.getMessage() == "provider call"]
    assert [(r.provider, r.op, r.symbol, r.outcome) for r in calls] == [  # type: ignore[attr-defined]
        ("scripted", "quote", "AAPL", "permanent"),
        ("scripted", "quote", "AAPL", "ok"),
    ]
    assert all(r.latency_ms >= 0 for r in calls)  # type: ignore[attr-defined]
    assert f.counters.calls == {("scripted", "permanent"): 1, ("scripted", "ok"): 1}
