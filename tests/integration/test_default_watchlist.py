"""A first run monitors the default watchlist; a watchlist emptied on purpose stays empty.

The store contract runs against both stores; the restart behaviour drives the monitor's first
cycle by hand; the real app (``create_app``) is checked for the first run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.memory_store import MemoryAlertStore
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.store import AlertStore, RedisAlertStore
from marketpulse.config import DEFAULT_WATCHLIST, Settings
from marketpulse.errors import ValidationFailed
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from support.harness import serve, settings_for

FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)
WATCH = ("AAPL", "TCS.NS")


@pytest.fixture(params=["redis", "memory"])
async def store(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[AlertStore]:
    if request.param == "memory":
        yield MemoryAlertStore()
        return
    client = RedisClient.from_url(redis_url)
    try:
        yield RedisAlertStore(client)
    finally:
        await client.aclose()


async def test_seeds_only_symbols_never_chosen(store: AlertStore) -> None:
    assert await store.seed_symbols([]) == []  # an empty watchlist marks nothing
    assert await store.seed_symbols(list(WATCH)) == list(WATCH)
    assert await store.symbols() == sorted(WATCH)
    assert await store.seed_symbols(["MSFT"]) == []  # already chosen
    for s in WATCH:
        await store.remove_symbol(s)
    assert await store.seed_symbols(list(WATCH)) == []  # emptied on purpose: stays empty
    assert await store.symbols() == []


async def test_an_add_or_remove_counts_as_choosing(store: AlertStore) -> None:
    await store.remove_symbol("AAPL")  # even a remove of nothing is a choice
    assert await store.seed_symbols(list(WATCH)) == []
    assert await store.symbols() == []


async def test_symbols_stored_before_the_marker_are_kept(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    await redis_client.sadd(keys.SYMBOLS, "IBM")  # a deployment from before the marker
    store = RedisAlertStore(redis_boundary)
    assert await store.seed_symbols(list(WATCH)) == []
    assert await store.symbols() == ["IBM"]
    assert await redis_client.get(keys.SYMBOLS_CHOSEN) == b"1"


def monitor(redis: RedisClient, watchlist: tuple[str, ...]) -> MonitorService:
    clock = ManualClock(5)
    fetcher = DataFetcher([TickQuoteProvider(SimulatedSource(seed=42))], clock=clock, policy=FAST)
    alerts = AlertManager(RedisAlertStore(redis), [])
    return MonitorService(fetcher, alerts, redis=redis, clock=clock, watchlist=watchlist)


async def test_first_run_seeds_and_a_restart_keeps_the_users_choice(
    redis_boundary: RedisClient,
) -> None:
    first = monitor(redis_boundary, WATCH)
    assert await first.run_once() == len(WATCH)  # the first cycle already watches them
    assert await first.symbols() == sorted(WATCH)
    await first.release_lease()
    for s in WATCH:
        await first.remove_symbol(s)

    restarted = monitor(redis_boundary, WATCH)
    assert await restarted.run_once() == 0
    assert await restarted.symbols() == []


async def test_a_disabled_watchlist_seeds_nothing(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    service = monitor(redis_boundary, ())
    await service.run_once()
    assert await service.symbols() == []
    assert not await redis_client.exists(keys.SYMBOLS_CHOSEN)  # a later first run still may


def test_a_bad_watchlist_symbol_is_refused_when_built(redis_boundary: RedisClient) -> None:
    with pytest.raises(ValidationFailed, match="invalid symbol"):
        monitor(redis_boundary, ("AAPL", "no spaces"))


def test_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARKETPULSE_WATCHLIST", raising=False)
    assert (
        Settings().watchlist == DEFAULT_WATCHLIST == ("AAPL", "MSFT", "GOOGL", "TCS.NS", "INFY.NS")
    )
    for off in ("", "none", "None", " NONE "):
        monkeypatch.setenv("MARKETPULSE_WATCHLIST", off)
        assert Settings().watchlist == ()
    monkeypatch.setenv("MARKETPULSE_WATCHLIST", " ibm, reliance.ns,IBM ,")
    assert Settings().watchlist == ("IBM", "RELIANCE.NS")
    monkeypatch.setenv("MARKETPULSE_WATCHLIST", "IBM,two words")
    with pytest.raises(ValueError, match="invalid symbol 'two words'"):
        Settings()


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("simulated", DEFAULT_WATCHLIST),
        ("replay", ("AAPL", "MSFT", "GOOGL")),  # the replay data has no NSE symbols
        ("replay,simulated", DEFAULT_WATCHLIST),  # the fallback has them
    ],
)
async def test_the_service_shows_the_default_watchlist_on_a_first_run(
    redis_url: str, redis_client: Redis, source: str, shown: tuple[str, ...]
) -> None:
    settings = settings_for(
        redis_url, watchlist=DEFAULT_WATCHLIST, monitor_interval=0.05, data_source=source
    )
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.QUOTE_EVENTS_ALL)  # the monitor publishes what it observes
    try:
        async with serve(settings) as server:
            async with asyncio.timeout(20):
                while (await pubsub.get_message(timeout=1.0)) is None:
                    pass  # the subscribe confirmation
                while (msg := await pubsub.get_message(timeout=1.0)) is None:
                    pass  # a quote: the first cycle, which seeded the watchlist, is running
            assert msg["type"] == "message"
            r = await server.http.get("/api/symbols")
            assert r.json() == {"symbols": sorted(shown)}
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
