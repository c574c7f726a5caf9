"""A cache Redis that is down, stopped or hung costs the cache, never the quote.

Real redis-servers only: a port with nothing listening, and a redis-server this test starts,
stops (or freezes with SIGSTOP) and starts again. The fetch layer's clock is a fake we own.
"""

from __future__ import annotations

import logging
import os
import signal
from datetime import UTC, datetime

import pytest

from marketpulse.config import Settings
from marketpulse.errors import QuoteUnavailable, TransientSourceError
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.infra.retry import RetryPolicy
from marketpulse.market.cache import CacheManager
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher, build_fetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.quotes import Bar, StockData
from support.fakes import FakeTime

GUARD_LOG = "marketpulse.market.best_effort"


class Switchable:
    """A live provider we own: answers 190.0, or fails transiently while ``failing``."""

    name = "switchable"
    live = True

    def __init__(self) -> None:
        self.failing = False
        self.calls = 0

    async def quote(self, symbol: str, tick: int) -> StockData:
        self.calls += 1
        if self.failing:
            raise TransientSourceError("switchable: HTTP 503 from upstream")
        return StockData(
            symbol=symbol, price=190.0, volume=10, timestamp=datetime(2026, 1, 2, tzinfo=UTC),
            high=191.0, low=189.0, open=190.0, close=190.0, source=self.name,
        )  # fmt: skip

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        raise TransientSourceError("switchable: no history")


def policy(fake: FakeTime, **kw: object) -> FetchPolicy:
    base: dict[str, object] = {
        "retry": RetryPolicy(max_attempts=1),
        "cache_retry_s": 5.0,
        "outage_log_every_s": 60.0,
        "now": fake.now,
        "sleep": fake.sleep,
    }
    base.update(kw)
    return FetchPolicy(**base)  # type: ignore[arg-type]


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == GUARD_LOG]


async def test_a_cache_at_a_closed_port_costs_the_cache_not_the_quote(
    dead_redis: RedisClient, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeTime(1000.0)
    provider = Switchable()
    f = DataFetcher(
        [provider], cache=CacheManager(redis=dead_redis), clock=ManualClock(),
        policy=policy(fake),
    )  # fmt: skip
    caplog.set_level(logging.INFO, logger=GUARD_LOG)
    q = await f.fetch_stock_data("AAPL")
    assert (q.price, q.source, q.stale) == (190.0, "switchable", False)
    got = await f.fetch_batch_data([f"S{i}" for i in range(20)])
    assert len(got) == 20
    assert provider.calls == 21
    # one read failed; its write and every later operation bypassed the cache (no more waiting)
    m = f.metrics()
    assert (m["cache_errors"], m["cache_bypassed"]) == (1, 3)
    [warning] = outage_lines(caplog)  # once, not per symbol or per call
    assert warning.levelno == logging.WARNING
    assert warning.getMessage() == "quote cache unavailable; quotes are fetched without it"
    assert (warning.op, warning.failures) == ("read", 1)  # type: ignore[attr-defined]
    assert "quote cache read failed" in warning.error  # type: ignore[attr-defined]

    fake.t += 5.0  # the retry window passed: one trial, which fails again, and is not logged
    await f.fetch_stock_data("AAPL")
    assert f.metrics()["cache_errors"] == 2
    assert len(outage_lines(caplog)) == 1
    fake.t += 60.0  # a minute on: the outage is reported again, with what was not logged
    await f.fetch_stock_data("AAPL")
    second = outage_lines(caplog)[-1]
    assert (second.failures, second.not_logged) == (3, 1)  # type: ignore[attr-defined]

    provider.failing = True  # providers fail too: their error, not the cache's
    with pytest.raises(QuoteUnavailable, match="switchable: HTTP 503 from upstream"):
        await f.fetch_stock_data("AAPL")
    assert f.counters.stale_served == 0


async def test_the_main_redis_down_still_fetches_from_the_providers(
    dead_redis: RedisClient,
) -> None:
    f = build_fetcher(Settings(data_source="simulated"), dead_redis, None)
    q = await f.fetch_stock_data("AAPL")  # tick unreadable: the last tick read, 0 at first
    assert q.source == "simulated"
    assert not q.stale
    m = f.metrics()
    assert (m["tick_errors"], m["cache_errors"]) == (1, 1)
    await f.close()


async def test_a_stopped_cache_redis_then_back(
    own_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeTime(1000.0)
    provider = Switchable()
    client = RedisClient.from_url(own_redis.url)
    f = DataFetcher(
        [provider], cache=CacheManager(redis=client), clock=ManualClock(), policy=policy(fake)
    )
    caplog.set_level(logging.INFO, logger=GUARD_LOG)
    try:
        await f.fetch_stock_data("AAPL")
        await f.fetch_stock_data("AAPL")
        assert provider.calls == 1  # the second came from the cache
        assert await client.call("EXISTS", keys.last_good_quote("AAPL"))

        own_redis.stop()
        provider.failing = True
        # a last good quote exists, but in a Redis that does not answer: the provider's error
        with pytest.raises(QuoteUnavailable, match="switchable: HTTP 503 from upstream"):
            await f.fetch_stock_data("AAPL")
        assert f.counters.stale_served == 0
        provider.failing = False
        q = await f.fetch_stock_data("AAPL")
        assert (q.source, q.stale) == ("switchable", False)
        assert provider.calls == 3

        own_redis.start()  # same port, empty (not durable)
        fake.t += 5.0  # past the retry window: the trial read finds Redis again
        await f.fetch_stock_data("AAPL")
        assert (
            await client.call("EXISTS", keys.quote_cache("AAPL"), keys.last_good_quote("AAPL")) == 2
        )
        await f.fetch_stock_data("AAPL")
        assert provider.calls == 4  # cached again
        messages = [r.getMessage() for r in outage_lines(caplog)]
        assert messages == [
            "quote cache unavailable; quotes are fetched without it",
            "quote cache available again",
        ]
    finally:
        await client.aclose()


async def test_a_hung_cache_redis_is_waited_for_only_up_to_the_cache_timeout(
    own_redis: EmbeddedRedis,
) -> None:
    fake = FakeTime(1000.0)
    provider = Switchable()
    client = RedisClient.from_url(own_redis.url)
    f = DataFetcher(
        [provider], cache=CacheManager(redis=client), clock=ManualClock(),
        policy=policy(fake, cache_timeout_s=0.2),
    )  # fmt: skip
    try:
        await f.fetch_stock_data("AAPL")  # connected and cached
        os.kill(own_redis.pid, signal.SIGSTOP)  # accepts nothing, answers nothing
        try:
            q = await f.fetch_stock_data("MSFT")
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        assert (q.source, q.stale) == ("switchable", False)
        assert f.metrics()["cache_errors"] == 1
        fake.t += 5.0
        await f.fetch_stock_data("MSFT")  # Redis answers again: the cache is used again
        assert await client.call("EXISTS", keys.quote_cache("MSFT")) == 1
    finally:
        await client.aclose()
