"""A new alert is evaluated at once against the latest cached quote (docs/alerts.md), on a
real Redis: ``POST /api/alerts`` for a condition already true fires before it returns, with no
tick to explain it (the monitor's loop does not run; its interval would be an hour), through
the same fire decision as the ticks, so a tick at the same quote fires nothing more. An alert
added by an instance without the cache is evaluated by the monitor's instance when it syncs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.http import router
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.notifiers import RedisPublishNotifier
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.http_errors import install_error_handlers
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.cache import CacheManager
from marketpulse.market.clock import ManualClock
from marketpulse.market.quotes import Bar, StockData
from marketpulse.observability.telemetry import Telemetry
from support.asgi import with_state
from support.harness import serve, settings_for

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


class SameQuote:
    """A feed of ours that quotes every symbol at 200.0, at the same instant, at every tick."""

    clock = ManualClock(0)
    live = False

    async def fetch_stock_data(self, symbol: str, *, tick: int | None = None) -> StockData:
        return StockData(symbol=symbol, price=200.0, volume=1_000, timestamp=AT, high=200.0,
                         low=200.0, open=200.0, close=190.0, previous_close=190.0)  # fmt: skip

    async def fetch_batch_data(
        self, symbols: Sequence[str], *, tick: int | None = None
    ) -> dict[str, StockData]:
        return {s: await self.fetch_stock_data(s, tick=tick) for s in symbols}

    async def history(self, symbol: str, n: int = 253, *, tick: int | None = None) -> list[Bar]:
        raise NotImplementedError  # the monitor reads no history


class Instance:
    """One instance: its alert manager (with or without the quote cache) and its monitor."""

    def __init__(self, redis: RedisClient, *, with_cache: bool) -> None:
        self.feed = SameQuote()
        self.cache = CacheManager(redis=redis)
        self.alerts = AlertManager(
            RedisAlertStore(redis),
            [RedisPublishNotifier(redis)],
            redis=redis,
            quotes=self.cache if with_cache else None,
        )
        self.monitor = MonitorService(
            self.feed,
            self.alerts,
            redis=redis,
            clock=self.feed.clock,
            cache=self.cache,
            interval_s=3600.0,
        )

    def app(self) -> Any:
        app = FastAPI()
        install_error_handlers(app)
        app.include_router(router)
        state: dict[str, Any] = {
            "alerts": self.alerts,
            "monitor": self.monitor,
            "allowed_origins": frozenset({"http://testserver"}),
            "telemetry": Telemetry(),
        }
        return with_state(app, state)


@pytest.fixture
async def instance(redis_boundary: RedisClient) -> Instance:
    inst = Instance(redis_boundary, with_cache=True)
    await inst.monitor.add_symbol("AAPL")
    assert await inst.monitor.run_once() == 1  # tick 0: AAPL at 200.0 is cached
    return inst


ABOVE_150 = {"symbol": "AAPL", "alert_type": "price_threshold", "threshold": 150,
             "comparison": "above"}  # fmt: skip


async def history(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await api.get("/api/alerts/history", params={"symbol": "AAPL"})
    assert r.status_code == 200
    rows: list[dict[str, Any]] = r.json()["history"]
    return rows


async def test_post_of_a_true_alert_fires_at_once_then_once_per_crossing(
    instance: Instance,
) -> None:
    transport = httpx.ASGITransport(app=instance.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
        r = await api.post("/api/alerts", json=ABOVE_150)
        assert r.status_code == 201
        alert_id = r.json()["id"]
        # no tick since the quote was cached (the loop does not run): the POST decided it
        fired = await history(api)
        assert [(f["alert_id"], f["value"], f["observation"]) for f in fired] == [
            (alert_id, 200.0, 0)
        ]
        # the next tick at the same quote: still true, the same crossing, nothing more
        instance.feed.clock.advance()
        assert await instance.monitor.run_once() == 1
        assert len(await history(api)) == 1
        # a false alert added is not fired, and waits for its crossing
        r = await api.post("/api/alerts", json=ABOVE_150 | {"threshold": 250})
        assert r.status_code == 201
        assert len(await history(api)) == 1


async def test_an_alert_added_elsewhere_is_evaluated_by_the_monitor_instance(
    instance: Instance, redis_boundary: RedisClient
) -> None:
    elsewhere = Instance(redis_boundary, with_cache=False)  # an instance without the cache
    await elsewhere.alerts.add_alert(
        AlertCondition(
            symbol="AAPL", alert_type=AlertType.PRICE_THRESHOLD, threshold=150, comparison="above"
        )
    )
    assert await instance.alerts.history("AAPL") == []  # not evaluated where it was added
    await instance.alerts.sync()  # what the monitor's every cycle does first
    assert [f.value for f in await instance.alerts.history("AAPL")] == [200.0]
    instance.feed.clock.advance()
    assert await instance.monitor.run_once() == 1
    assert len(await instance.alerts.history("AAPL")) == 1


async def test_in_memory_fires_at_once_too(redis_boundary: RedisClient) -> None:
    cache = CacheManager(redis=redis_boundary)
    quote = await SameQuote().fetch_stock_data("AAPL")
    await cache.set_stock_data("AAPL", quote)
    alerts = AlertManager.in_memory(notifiers=[])
    alerts.quotes = cache
    await alerts.add_alert(
        AlertCondition(
            symbol="AAPL", alert_type=AlertType.PERCENTAGE_CHANGE, threshold=5, comparison="above"
        )
    )
    fired = await alerts.history("AAPL")
    assert len(fired) == 1
    assert fired[0].value == pytest.approx(100 * 10 / 190)


async def test_the_service_fires_a_posted_alert_already_true_at_once(redis_url: str) -> None:
    """The whole service (its lifespan's delivery loop, ``/ws/alerts``), the market interval an
    hour: the quote fetched (and cached) and the alert posted, its fire arrives on the socket
    under a deadline, no tick since to explain it."""
    async with serve(settings_for(redis_url, market_interval=3600.0)) as server:
        r = await server.http.get("/api/quotes/AAPL")  # the fetcher caches what it fetches
        assert r.status_code == 200
        price = r.json()["price"]
        ws_url = server.base.replace("http://", "ws://") + "/ws/alerts"
        async with asyncio.timeout(20), websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"action": "ping"}))  # subscribed before the handshake
            assert json.loads(await ws.recv()) == {"type": "pong"}
            body = ABOVE_150 | {"threshold": price / 2}
            r = await server.http.post("/api/alerts", json=body)
            assert r.status_code == 201
            msg = json.loads(await ws.recv())
        assert (msg["type"], msg["alert_id"], msg["value"]) == ("alert", r.json()["id"], price)
        assert len((await server.http.get("/api/alerts/history")).json()["history"]) == 1
