"""Fault tests: the fetch policy against a misbehaving local server, on a fake clock.

Through both providers: ``nse`` (aiohttp) and ``yahoo`` (yfinance in its thread pool, its
requests sent to the same local server).
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from marketpulse.errors import QuoteUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import free_port
from marketpulse.infra.retry import RetryPolicy
from marketpulse.market.cache import CacheManager
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.ports import QuoteProvider
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers.nse import NseProvider
from marketpulse.market.providers.simulated import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.providers.yahoo import YahooProvider
from support.fakes import FakeTime
from support.market_server import Fault, MarketServer, redirecting_session

BASE = 0.5


@pytest.fixture
def server(market_server: MarketServer) -> MarketServer:
    return market_server


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime(1000.0)


def policy(fake: FakeTime, **kw: object) -> FetchPolicy:
    base: dict[str, object] = {
        "timeout_s": 2.0,
        "retry": RetryPolicy(max_attempts=3, base_s=BASE, cap_s=4.0),
        "breaker_failures": 100,
        "breaker_cooldown_s": 30.0,
        "now": fake.now,
        "sleep": fake.sleep,
        "uniform": lambda lo, hi: hi,  # jitter pinned to its ceiling
    }
    base.update(kw)
    return FetchPolicy(**base)  # type: ignore[arg-type]


def fetcher(
    providers: list[QuoteProvider], pol: FetchPolicy, cache: CacheManager | None = None
) -> DataFetcher:
    return DataFetcher(providers, cache=cache, clock=ManualClock(3), policy=pol)


async def test_429_with_retry_after_waits_what_the_server_asked(
    server: MarketServer, fake: FakeTime
) -> None:
    server.faults.append(Fault(429, "Edge: Too Many Requests", {"Retry-After": "7"}))
    f = fetcher([NseProvider(server.url)], policy(fake))
    q = await f.fetch_stock_data("HDFCBANK")
    assert q.price == 764.9
    assert fake.sleeps == [7.0]
    await f.close()


@pytest.mark.parametrize(
    "fault",
    [
        Fault(429, "Edge: Too Many Requests"),
        Fault(500, "<html>oops</html>"),
        Fault(503, "busy"),
    ],
    ids=["429-no-retry-after", "500", "503"],
)
async def test_transient_errors_retry_bounded_then_fall_back(
    server: MarketServer, fake: FakeTime, fault: Fault
) -> None:
    server.faults.extend([fault] * 10)
    sim = TickQuoteProvider(SimulatedSource(seed=1))
    f = fetcher([NseProvider(server.url), sim], policy(fake))
    q = await f.fetch_stock_data("HDFCBANK")
    assert q.source == sim.name
    assert server.api_calls == 3  # max_attempts, no more
    assert fake.sleeps == [BASE, 2 * BASE]  # exponential ceilings (jitter pinned high)
    assert f.counters.calls[("nse", "transient")] == 3
    await f.close()


async def test_full_jitter_stays_under_the_ceiling(server: MarketServer, fake: FakeTime) -> None:
    import random

    rng = random.Random(5)
    server.faults.extend([Fault(500)] * 3)
    f = fetcher([NseProvider(server.url)], policy(fake, uniform=rng.uniform))
    with pytest.raises(QuoteUnavailable):
        await f.fetch_stock_data("HDFCBANK")
    assert len(fake.sleeps) == 2
    assert 0 <= fake.sleeps[0] <= BASE
    assert 0 <= fake.sleeps[1] <= 2 * BASE
    await f.close()


async def test_hang_past_the_timeout_is_retried_then_falls_back(
    server: MarketServer, fake: FakeTime
) -> None:
    server.faults.extend([Fault(hang=True)] * 2)
    sim = TickQuoteProvider(SimulatedSource(seed=1))
    pol = policy(fake, timeout_s=0.2, retry=RetryPolicy(max_attempts=2, base_s=BASE))
    f = fetcher([NseProvider(server.url), sim], pol)
    q = await f.fetch_stock_data("HDFCBANK")
    assert q.source == sim.name
    assert f.counters.calls[("nse", "timeout")] == 2
    assert fake.sleeps == [BASE]
    await f.close()


async def test_garbage_json_is_not_retried(server: MarketServer, fake: FakeTime) -> None:
    server.faults.append(Fault(200, '{"equityResponse": [ garbage'))
    sim = TickQuoteProvider(SimulatedSource(seed=1))
    f = fetcher([NseProvider(server.url), sim], policy(fake))
    q = await f.fetch_stock_data("HDFCBANK")
    assert q.source == sim.name
    assert server.api_calls == 1
    assert fake.sleeps == []
    await f.close()


async def test_connection_refused_is_transient(fake: FakeTime) -> None:
    sim = TickQuoteProvider(SimulatedSource(seed=1))
    f = fetcher([NseProvider(f"http://127.0.0.1:{free_port()}"), sim], policy(fake))
    q = await f.fetch_stock_data("HDFCBANK")
    assert q.source == sim.name
    assert fake.sleeps == [BASE, 2 * BASE]
    status = f.provider_status()[0]
    assert status["calls_failed"] == 3
    assert "ClientConnectorError" in str(status["last_error"])
    await f.close()


async def test_breaker_opens_then_half_opens_and_closes(
    server: MarketServer, fake: FakeTime
) -> None:
    server.faults.extend([Fault(500)] * 2)
    sim = TickQuoteProvider(SimulatedSource(seed=1))
    pol = policy(fake, retry=RetryPolicy(max_attempts=1), breaker_failures=2)
    f = fetcher([NseProvider(server.url), sim], pol)
    for _ in range(2):
        assert (await f.fetch_stock_data("HDFCBANK")).source == sim.name
    assert f.provider_status()[0]["circuit"] == "open"
    calls = server.api_calls
    assert (await f.fetch_stock_data("HDFCBANK")).source == sim.name
    assert server.api_calls == calls  # refused without touching the provider
    fake.t += 31.0
    assert f.provider_status()[0]["circuit"] == "half_open"
    q = await f.fetch_stock_data("HDFCBANK")  # the trial call; the server is healthy again
    assert q.source == "nse"
    assert f.provider_status()[0]["circuit"] == "closed"
    await f.close()


async def test_stale_last_good_quote_served_when_everything_fails(
    server: MarketServer, fake: FakeTime, redis_client: Redis, redis_boundary: RedisClient
) -> None:
    wall = [5000.0]
    cache = CacheManager(redis=redis_boundary, ttl=300, now=lambda: wall[0])
    f = DataFetcher(
        [NseProvider(server.url)], cache=cache, clock=ManualClock(), policy=policy(fake),
        wall=lambda: wall[0],
    )  # fmt: skip
    fresh = await f.fetch_stock_data("HDFCBANK")
    assert not fresh.stale
    await redis_client.delete(keys.quote_cache("HDFCBANK"))  # as if the TTL had passed
    server.faults.extend([Fault(500)] * 3)
    wall[0] += 42.0
    stale = await f.fetch_stock_data("HDFCBANK")
    assert stale.stale
    assert stale.age_s == pytest.approx(42.0)
    assert stale.price == fresh.price
    assert f.counters.stale_served == 1
    await f.close()


async def test_batch_never_raises_for_one_bad_symbol(server: MarketServer, fake: FakeTime) -> None:
    f = fetcher([NseProvider(server.url)], policy(fake))
    got = await f.fetch_batch_data(["HDFCBANK", "NOSUCH", "bad symbol!", "INFY"])
    assert set(got) == {"HDFCBANK", "INFY"}
    with pytest.raises(QuoteUnavailable):
        await f.fetch_stock_data("NOSUCH")
    await f.close()


# -- yahoo (yfinance) -------------------------------------------------------------------------


def chart_calls(server: MarketServer) -> int:
    """Chart requests yfinance made (its cookie and consent requests are not counted)."""
    return sum(1 for path, _ in server.requests if path.startswith("/v8/finance/chart/"))


def yahoo_for(server: MarketServer) -> YahooProvider:
    # yfinance's own HTTP timeout is longer than the policy's: a hang is the policy's to end
    return YahooProvider(session=redirecting_session(server.url), timeout_s=5.0)


@pytest.mark.parametrize(
    "fault",
    [Fault(500, "<html>oops</html>"), Fault(503, "busy"), Fault(200, '{"chart": {"result": [ x')],
    ids=["500", "503", "garbage-json"],
)
async def test_yahoo_faults_retry_bounded_open_the_breaker_and_fall_back(
    server: MarketServer, fake: FakeTime, fault: Fault
) -> None:
    server.faults.extend([fault] * 20)
    sim = TickQuoteProvider(SimulatedSource(seed=1))
    f = fetcher([yahoo_for(server), sim], policy(fake, breaker_failures=3))
    q = await f.fetch_stock_data("MSFT")
    assert q.source == sim.name
    # a non-JSON body is transient from yahoo (Yahoo's 429/5xx bodies are text): retried
    assert f.counters.calls[("yahoo", "transient")] == 3  # max_attempts, no more
    assert fake.sleeps == [BASE, 2 * BASE]
    # yfinance itself repeats a failed chart request at most once (after renewing its cookie)
    assert 3 <= chart_calls(server) <= 6
    assert f.provider_status()[0]["circuit"] == "open"
    seen = chart_calls(server)
    batch = await f.fetch_batch_data(["MSFT", "TCS.NS"])
    assert {s: b.source for s, b in batch.items()} == {"MSFT": sim.name, "TCS.NS": sim.name}
    assert chart_calls(server) == seen  # the open breaker refuses without touching Yahoo
    server.faults.clear()
    fake.t += 31.0
    q = await f.fetch_stock_data("MSFT")  # the half-open trial; Yahoo is healthy again
    assert (q.source, q.price) == ("yahoo", 541.55)
    assert f.provider_status()[0]["circuit"] == "closed"
    await f.close()


async def test_yahoo_hang_past_the_timeout_is_retried_then_falls_back(
    server: MarketServer, fake: FakeTime
) -> None:
    server.faults.extend([Fault(hang=True)] * 2)
    sim = TickQuoteProvider(SimulatedSource(seed=1))
    pol = policy(
        fake, timeout_s=0.2, retry=RetryPolicy(max_attempts=2, base_s=BASE), breaker_failures=2
    )
    f = fetcher([yahoo_for(server), sim], pol)
    q = await f.fetch_stock_data("MSFT")
    assert q.source == sim.name
    assert f.counters.calls[("yahoo", "timeout")] == 2
    assert fake.sleeps == [BASE]
    assert chart_calls(server) == 2
    assert f.provider_status()[0]["circuit"] == "open"
    fake.t += 31.0  # two worker threads still hang; the pool has more for the trial
    q = await f.fetch_stock_data("MSFT")
    assert (q.source, q.price) == ("yahoo", 541.55)
    assert f.provider_status()[0]["circuit"] == "closed"
    await f.close()


async def test_yahoo_down_serves_the_stale_last_good_quote(
    server: MarketServer, fake: FakeTime, redis_client: Redis, redis_boundary: RedisClient
) -> None:
    wall = [5000.0]
    cache = CacheManager(redis=redis_boundary, ttl=300, now=lambda: wall[0])
    f = DataFetcher(
        [yahoo_for(server)], cache=cache, clock=ManualClock(), policy=policy(fake),
        wall=lambda: wall[0],
    )  # fmt: skip
    fresh = await f.fetch_stock_data("MSFT")
    assert (fresh.source, fresh.stale) == ("yahoo", False)
    await redis_client.delete(keys.quote_cache("MSFT"))  # as if the TTL had passed
    server.faults.extend([Fault(503, "busy")] * 10)
    wall[0] += 42.0
    stale = await f.fetch_stock_data("MSFT")
    assert stale.stale
    assert stale.age_s == pytest.approx(42.0)
    assert (stale.price, stale.source) == (541.55, "yahoo")
    assert f.counters.calls[("yahoo", "transient")] == 3
    assert f.counters.stale_served == 1
    await f.close()
