"""/api/alerts, /api/symbols and /ws/alerts on a real Redis: bad input is a clear 422 and
stores nothing; fired alerts reach WebSocket subscribers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.types import ASGIApp

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.http import router
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.notifiers import RedisPublishNotifier
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.http_errors import install_error_handlers
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.quotes import StockData
from marketpulse.observability.telemetry import Telemetry
from support.asgi import with_state
from support.harness import serve_asgi


def build_app(redis: RedisClient | None) -> tuple[ASGIApp, dict[str, Any]]:
    """The alert routes on ``redis`` (None: the in-memory AlertManager, no Redis at all)."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    if redis is None:
        alerts = AlertManager.in_memory(notifiers=[])
    else:
        alerts = AlertManager(RedisAlertStore(redis), [RedisPublishNotifier(redis)])
    clock = ManualClock(0)
    fetcher = DataFetcher([TickQuoteProvider(SimulatedSource(seed=42))], clock=clock)
    state: dict[str, Any] = {
        "alerts": alerts,
        "monitor": MonitorService(fetcher, alerts, redis=redis, clock=clock),
        "allowed_origins": frozenset({"http://testserver"}),
        "telemetry": Telemetry(),
    }
    return with_state(app, state), state


@pytest.fixture
async def api(redis_boundary: RedisClient) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(redis_boundary)[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


GOOD = {"symbol": "AAPL", "alert_type": "price_threshold", "threshold": 150, "comparison": "above"}


async def test_create_list_delete_alert(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/alerts", json=GOOD | {"cooldown_s": 60})
    assert r.status_code == 201
    created = r.json()
    assert created["symbol"] == "AAPL"
    assert created["cooldown_s"] == 60
    listed = (await api.get("/api/alerts")).json()["alerts"]
    assert [a["id"] for a in listed] == [created["id"]]
    assert (await api.delete(f"/api/alerts/{created['id']}")).status_code == 204
    r = await api.delete(f"/api/alerts/{created['id']}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "alert_not_found"
    assert (await api.get("/api/alerts")).json()["alerts"] == []


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"alert_type": "price_jump"}, "unknown alert type 'price_jump'"),
        ({"comparison": "equals"}, "comparison must be 'above' or 'below'"),
        ({"threshold": -5}, "threshold must be >= 0"),
        ({"threshold": "NaN"}, "threshold must be a finite number"),
        ({"symbol": "not a symbol!"}, "invalid symbol"),
        ({"threshold": "abc"}, "threshold"),
        # the body is taken as sent, as the OpenAPI schema describes it: nothing is coerced
        ({"threshold": "150"}, "threshold must be a finite number"),
        ({"threshold": True}, "threshold must be a finite number"),
        ({"comparison": "Above"}, "comparison must be 'above' or 'below'"),
        ({"alert_type": "PRICE_THRESHOLD"}, "unknown alert type 'PRICE_THRESHOLD'"),
        ({"symbol": " AAPL"}, "invalid symbol"),
        ({"cooldown_s": "60"}, "cooldown_s"),
        ({"expires_at": 0}, "expires_at must be an RFC 3339 date-time with an offset"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at must be an RFC 3339 date-time"),
        ({"id": "not an id"}, "id must be 1-64 characters"),
    ],
)
async def test_bad_alert_is_a_clear_422_and_nothing_is_stored(
    api: httpx.AsyncClient, redis_client: Redis, change: dict[str, object], needle: str
) -> None:
    r = await api.post("/api/alerts", json=GOOD | change)
    assert r.status_code == 422
    body = r.json()["error"]
    assert body["code"] == "invalid_input"
    assert needle in body["message"]
    assert await redis_client.dbsize() == 0


async def test_expiry_with_an_offset_is_kept(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/alerts", json=GOOD | {"expires_at": "2030-01-02T03:04:05+05:30"})
    assert r.status_code == 201
    assert r.json()["expires_at"] == "2030-01-02T03:04:05+05:30"


async def test_405_names_every_method_of_the_path(api: httpx.AsyncClient) -> None:
    for path, allow in [
        ("/api/alerts", "GET, POST"),
        ("/api/alerts/history", "GET"),  # the described path, before /api/alerts/{alert_id}
        ("/api/alerts/some-id", "PUT, DELETE"),
        ("/api/symbols", "GET, POST"),
    ]:
        r = await api.request("OPTIONS", path)
        assert r.status_code == 405 and r.headers["allow"] == allow, path
        assert r.json()["error"]["code"] == "method_not_allowed"
    assert (await api.patch("/api/alerts")).headers["allow"] == "GET, POST"


async def test_nan_literal_in_json_is_refused(api: httpx.AsyncClient, redis_client: Redis) -> None:
    body = (
        '{"symbol": "AAPL", "alert_type": "price_threshold", "threshold": NaN, '
        '"comparison": "above"}'
    )
    r = await api.post("/api/alerts", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "finite" in r.json()["error"]["message"]
    assert await redis_client.dbsize() == 0


async def test_symbols_add_list_remove(api: httpx.AsyncClient, redis_client: Redis) -> None:
    r = await api.post("/api/symbols", json={"symbol": "tcs.ns"})
    assert r.status_code == 201
    spaced = await api.post("/api/symbols", json={"symbol": " TCS.NS"})
    assert spaced.status_code == 422 and "invalid symbol" in spaced.json()["error"]["message"]
    assert r.json()["symbols"] == ["TCS.NS"]
    assert (await api.get("/api/symbols")).json() == {"symbols": ["TCS.NS"]}
    bad = await api.post("/api/symbols", json={"symbol": "$$$"})
    assert bad.status_code == 422
    assert "invalid symbol" in bad.json()["error"]["message"]
    assert (await api.delete("/api/symbols/TCS.NS")).status_code == 204
    assert (await api.delete("/api/symbols/TCS.NS")).status_code == 404
    assert await redis_client.smembers("mp:monitor:symbols") == set()


async def test_history_is_newest_first_and_filtered(
    api: httpx.AsyncClient, redis_boundary: RedisClient
) -> None:
    alerts = AlertManager(RedisAlertStore(redis_boundary), [])
    for sym in ("AAPL", "MSFT"):
        await alerts.add_alert(GOOD_FOR(sym))
    for i, (sym, price) in enumerate([("AAPL", 151), ("MSFT", 160), ("AAPL", 140), ("AAPL", 152)]):
        await alerts.check_alerts(quote(sym, price, i))
    rows = (await api.get("/api/alerts/history", params={"symbol": "aapl", "limit": 5})).json()[
        "history"
    ]
    assert [r["quote"]["price"] for r in rows] == [152, 151]
    assert len((await api.get("/api/alerts/history")).json()["history"]) == 3
    r = await api.get("/api/alerts/history", params={"limit": 0})
    assert r.status_code == 422


def GOOD_FOR(symbol: str):  # type: ignore[no-untyped-def]
    from marketpulse.alerts.rules import AlertCondition

    return AlertCondition.model_validate(GOOD | {"symbol": symbol})


def quote(symbol: str, price: float, day: int) -> StockData:
    return StockData(
        symbol=symbol, price=price, volume=1, timestamp=datetime(2026, 1, 5 + day, tzinfo=UTC),
        high=price, low=price, open=price, close=price, source="test",
    )  # fmt: skip


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    async with serve_asgi(app, lifespan="off") as base:
        yield base.replace("http://", "ws://")


async def test_ws_streams_fired_alerts_and_answers_ping(redis_boundary: RedisClient) -> None:
    app, state = build_app(redis_boundary)
    alerts: AlertManager = state["alerts"]
    await alerts.add_alert(GOOD_FOR("AAPL"))
    async with (
        asyncio.timeout(10),
        served(app) as base,
        websockets.connect(f"{base}/ws/alerts") as ws,
    ):
        await ws.send(json.dumps({"action": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
        await ws.send("nope")
        assert json.loads(await ws.recv())["code"] == "bad_json"
        await alerts.check_alerts(quote("AAPL", 155, 0))
        await alerts.deliver_pending()  # on Redis: from the outbox (in memory: already sent)
        msg = json.loads(await ws.recv())
    assert msg["type"] == "alert"
    assert msg["symbol"] == "AAPL"
    assert msg["quote"]["price"] == 155
    assert msg["channels"] == []  # published before the channels were known
    [h] = await alerts.history()
    assert h.id == msg["id"] and h.channels == ["websocket"] and "websocket" in h.deliveries


async def test_ws_refuses_a_foreign_origin(redis_boundary: RedisClient) -> None:
    app, _ = build_app(redis_boundary)
    async with asyncio.timeout(10), served(app) as base:
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(f"{base}/ws/alerts", origin="http://evil.example"):  # type: ignore[arg-type]
                pass


async def test_ws_closes_on_a_binary_frame_or_a_message_over_4_kib(
    redis_boundary: RedisClient,
) -> None:
    app, _ = build_app(redis_boundary)
    async with asyncio.timeout(10), served(app) as base:
        async with websockets.connect(f"{base}/ws/alerts") as ws:
            await ws.send(b"\x00\x01")
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
        assert ws.close_code == 1003
        async with websockets.connect(f"{base}/ws/alerts") as ws:
            await ws.send(json.dumps({"action": "ping", "pad": "x" * 5000}))
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
        assert ws.close_code == 1009
        async with websockets.connect(f"{base}/ws/alerts") as ws:  # the service is unharmed
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await ws.recv()) == {"type": "pong"}


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_ws_gets_an_alert_fired_right_after_the_handshake(
    redis_boundary: RedisClient, backend: str
) -> None:
    """The subscription (through the instance's hub, or the local queue) is confirmed before
    the handshake completes: an alert fired at once is not missed."""
    app, state = build_app(redis_boundary if backend == "redis" else None)
    alerts: AlertManager = state["alerts"]
    await alerts.add_alert(GOOD_FOR("AAPL"))
    async with (
        asyncio.timeout(10),
        served(app) as base,
        websockets.connect(f"{base}/ws/alerts") as ws,
    ):
        await alerts.check_alerts(quote("AAPL", 155, 0))
        await alerts.deliver_pending()  # on Redis: from the outbox (in memory: already sent)
        msg = json.loads(await ws.recv())
    assert (msg["type"], msg["symbol"]) == ("alert", "AAPL")


async def test_ws_is_refused_at_the_handshake_while_the_event_hub_is_down(redis_url: str) -> None:
    client = RedisClient.from_url(redis_url)
    stop = asyncio.Event()
    stop.set()
    await client.run(stop)  # the hub has stopped: no subscription can be confirmed
    try:
        async with asyncio.timeout(10), served(build_app(client)[0]) as base:
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(f"{base}/ws/alerts"):
                    pass
    finally:
        await client.aclose()
