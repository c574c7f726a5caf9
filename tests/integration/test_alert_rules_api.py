"""Issue 19's alert API on a real Redis: the new fields, PUT (edit, state reset, evaluated at
once), snooze, and each alert's current state in GET /api/alerts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.http import router
from marketpulse.alerts.monitor import MonitorService
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

T0 = datetime(2026, 1, 5, tzinfo=UTC)


class Latest:
    """The latest quotes the engine evaluates a new alert against (a cache of our own)."""

    def __init__(self) -> None:
        self.quotes: dict[str, StockData] = {}

    async def latest(self, symbol: str) -> StockData | None:
        return self.quotes.get(symbol)


def quote(price: float) -> StockData:
    return StockData(
        symbol="AAPL", price=price, volume=1000, timestamp=T0, high=price, low=price,
        open=price, close=100.0, previous_close=100.0, source="test",
    )  # fmt: skip


@pytest.fixture
async def setup(
    redis_boundary: RedisClient,
) -> AsyncIterator[tuple[httpx.AsyncClient, AlertManager, Latest]]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    latest = Latest()
    alerts = AlertManager(RedisAlertStore(redis_boundary), [], quotes=latest)
    clock = ManualClock(0)
    fetcher = DataFetcher([TickQuoteProvider(SimulatedSource(seed=42))], clock=clock)
    state: dict[str, Any] = {
        "alerts": alerts,
        "monitor": MonitorService(fetcher, alerts, redis=redis_boundary, clock=clock),
        "allowed_origins": frozenset({"http://testserver"}),
        "telemetry": Telemetry(),
    }
    transport = httpx.ASGITransport(app=with_state(app, state))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client, alerts, latest


RULE = {"symbol": "AAPL", "alert_type": "price_threshold", "threshold": 150,
        "comparison": "crosses_above", "rearm_margin": 2}  # fmt: skip


async def test_create_edit_and_list_with_state(
    setup: tuple[httpx.AsyncClient, AlertManager, Latest],
) -> None:
    api, alerts, latest = setup
    latest.quotes["AAPL"] = quote(151)
    r = await api.post("/api/alerts", json=RULE)
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["comparison"], created["rearm_margin"]) == ("crosses_above", 2)
    [listed] = (await api.get("/api/alerts")).json()["alerts"]
    # a crossing already true does not fire at once: disarmed, with its value at the quote
    assert listed["state"]["armed"] is False
    assert listed["state"]["text"] == "disarmed, price 151"
    assert listed["state"]["values"] == {"price": 151.0}
    assert await alerts.history("AAPL") == []
    # an edit to "above" (same id from the path) resets the state and fires at once
    r = await api.put(f"/api/alerts/{created['id']}", json=RULE | {"comparison": "above"})
    assert r.status_code == 200, r.text
    [fire] = await alerts.history("AAPL")
    assert fire.alert_id == created["id"] and fire.why == "price 151 >= 150"
    [listed] = (await api.get("/api/alerts")).json()["alerts"]
    assert listed["state"]["text"] == "fired, price 151"
    assert listed["state"]["last_fired_at"] == "2026-01-05T00:00:00Z"
    r = await api.put("/api/alerts/nope", json=RULE)
    assert r.status_code == 404 and r.json()["error"]["code"] == "alert_not_found"


async def test_snooze_and_unsnooze(setup: tuple[httpx.AsyncClient, AlertManager, Latest]) -> None:
    api, alerts, _ = setup
    created = (await api.post("/api/alerts", json=RULE)).json()
    r = await api.post(f"/api/alerts/{created['id']}/snooze", json={"minutes": 30})
    assert r.status_code == 200, r.text
    assert r.json()["snoozed_until"] is not None
    r = await api.post(
        f"/api/alerts/{created['id']}/snooze", json={"until": "2030-01-01T00:00:00Z"}
    )
    assert r.json()["snoozed_until"] == "2030-01-01T00:00:00Z"
    [listed] = (await api.get("/api/alerts")).json()["alerts"]
    assert listed["state"]["snoozed_until"] == "2030-01-01T00:00:00Z"
    # a snoozed alert's fire is recorded muted
    await alerts.check_alerts(quote(140), obs=1)
    await alerts.check_alerts(quote(151), obs=2)
    [fire] = await alerts.history("AAPL")
    assert fire.muted
    r = await api.delete(f"/api/alerts/{created['id']}/snooze")
    assert r.status_code == 200 and r.json()["snoozed_until"] is None
    assert (await api.post("/api/alerts/nope/snooze", json={"minutes": 5})).status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"minutes": 5, "until": "2030-01-01T00:00:00Z"}, "exactly one"),
        ({}, "exactly one"),
        ({"minutes": 0}, "minutes must be > 0"),
        ({"minutes": "5"}, "minutes must be a finite number"),
        ({"until": "tomorrow"}, "until must be an RFC 3339"),
    ],
)
async def test_bad_snooze_is_a_clear_422(
    setup: tuple[httpx.AsyncClient, AlertManager, Latest], body: dict[str, Any], needle: str
) -> None:
    api, _, _ = setup
    created = (await api.post("/api/alerts", json=RULE)).json()
    r = await api.post(f"/api/alerts/{created['id']}/snooze", json=body)
    assert r.status_code == 422 and needle in r.json()["error"]["message"], r.text


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"alert_type": "indicator"}, "needs 'indicator'"),
        ({"alert_type": "indicator", "indicator": {"kind": "rsi", "period": "14"}}, "1..400"),
        (
            {"alert_type": "indicator", "indicator": {"kind": "from_52w_low", "period": None}},
            "takes no period",
        ),
        ({"alert_type": "all_of", "threshold": 0}, "2 to 5 clauses"),
        ({"rearm_margin": "1"}, "rearm_margin must be a finite number"),
        ({"snoozed_until": "2030-01-01"}, "snoozed_until must be an RFC 3339"),
    ],
)
async def test_bad_rules_are_a_clear_422(
    setup: tuple[httpx.AsyncClient, AlertManager, Latest], change: dict[str, Any], needle: str
) -> None:
    api, _, _ = setup
    r = await api.post("/api/alerts", json=RULE | change)
    assert r.status_code == 422 and needle in r.json()["error"]["message"], r.text
    assert (await api.get("/api/alerts")).json()["alerts"] == []
