"""POST /api/alerts/backtest on a real Redis with the replay market: a rule or a stored alert
is replayed on history and nothing is stored; bad input is a clear 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from marketpulse.alerts.backtest import MAX_LISTED, MAX_RANGE_DAYS
from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.http import router
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.http_errors import install_error_handlers
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import ReplaySource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.observability.telemetry import Telemetry
from support.asgi import with_state

FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)
RULE = {"symbol": "AAPL", "alert_type": "price_threshold", "comparison": "above", "threshold": 600}


@pytest.fixture
async def api(redis_boundary: RedisClient) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    alerts = AlertManager(RedisAlertStore(redis_boundary), [])
    clock = ManualClock(250)  # past the replay data: its history ends 2013-03-01
    fetcher = DataFetcher([TickQuoteProvider(ReplaySource("2012-03-01"))], clock=clock, policy=FAST)
    state: dict[str, Any] = {
        "alerts": alerts,
        "monitor": MonitorService(fetcher, alerts, redis=redis_boundary, clock=clock),
        "fetcher": fetcher,
        "telemetry": Telemetry(),
    }
    transport = httpx.ASGITransport(app=with_state(app, state))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_a_rule_is_replayed_and_nothing_is_stored(
    api: httpx.AsyncClient, redis_boundary: RedisClient
) -> None:
    body = {"rule": RULE, "symbols": ["AAPL", "MSFT"], "start": "2012-03-01", "end": "2012-12-31"}
    r = await api.post("/api/alerts/backtest", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["start"], out["end"], out["clamped"]) == ("2012-03-01", "2012-12-31", False)
    aapl, msft = out["symbols"]
    assert (aapl["symbol"], msft["symbol"]) == ("AAPL", "MSFT")
    # AAPL closed above 600 in 2012 (and fell back under): it fired; MSFT never came near 600
    assert aapl["fire_count"] == len(aapl["fires"]) >= 2
    assert msft["fire_count"] == 0 and msft["time_true"]["sessions"] == 0
    assert out["fire_count"] == aapl["fire_count"]
    for fire in aapl["fires"]:
        assert fire["value"] >= 600 and fire["quote"]["price"] == fire["value"]
        assert fire["why"].startswith("price ") and not fire["muted"]
    assert aapl["time_true"]["sessions"] >= aapl["fire_count"]
    assert aapl["history"]["first"] <= "2012-02-01" and aapl["history"]["warmup_bars"] >= 20
    # a dry run: no alert, no state, no history, no outbox entry
    assert (await api.get("/api/alerts")).json() == {"alerts": []}
    assert (await api.get("/api/alerts/history")).json() == {"history": []}
    assert await redis_boundary.call("EXISTS", keys.ALERT_HISTORY) == 0
    assert await redis_boundary.call("DBSIZE") == 0


async def test_a_stored_alert_is_replayed_like_its_rule(
    api: httpx.AsyncClient, redis_boundary: RedisClient
) -> None:
    created = (await api.post("/api/alerts", json={**RULE, "id": "a1"})).json()
    store = RedisAlertStore(redis_boundary)
    before = await store.states(["a1"])
    keys_before = sorted(await redis_boundary.call("KEYS", "*"))
    by_rule = await api.post(
        "/api/alerts/backtest", json={"rule": RULE, "start": "2012-03-01", "end": "2012-12-31"}
    )
    by_id = await api.post(
        "/api/alerts/backtest",
        json={"alert_id": created["id"], "rule": None, "start": "2012-03-01", "end": "2012-12-31"},
    )
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["symbols"] == by_rule.json()["symbols"]
    assert by_id.json()["symbols"][0]["fire_count"] >= 2
    # the stored alert's state, history and outbox are untouched by its dry run
    assert await store.states(["a1"]) == before
    assert sorted(await redis_boundary.call("KEYS", "*")) == keys_before
    missing = await api.post(
        "/api/alerts/backtest",
        json={"alert_id": "nope", "start": "2012-03-01", "end": "2012-04-01"},
    )
    assert missing.status_code == 409 and missing.json()["error"]["code"] == "alert_not_found"


async def test_a_range_outside_the_history_names_what_it_has(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/api/alerts/backtest", json={"rule": RULE, "start": "2014-01-01", "end": "2014-06-01"}
    )
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "history_not_covered"
    assert "AAPL" in err["message"] and "2013-03-01" in err["message"]  # the last bar it has
    empty = await api.post(
        "/api/alerts/backtest", json={"rule": RULE, "start": "2012-06-01", "end": "2012-05-01"}
    )
    assert empty.status_code == 409 and "end before start" in empty.json()["error"]["message"]


async def test_a_long_range_is_cut_to_its_last_days(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/api/alerts/backtest", json={"rule": RULE, "start": "2001-01-01", "end": "2012-12-31"}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["clamped"] is True and out["requested_start"] == "2001-01-01"
    assert out["start"] == "2009-12-29"  # 2012-12-31 minus MAX_RANGE_DAYS
    assert MAX_RANGE_DAYS == 1098 and MAX_LISTED >= 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"start": "2012-03-01", "end": "2012-04-01"}, "alert_id"),
        ({"rule": RULE, "alert_id": "a1", "start": "2012-03-01", "end": "2012-04-01"}, "None"),
        ({"rule": RULE, "start": "2012-3-1", "end": "2012-04-01"}, "YYYY-MM-DD"),
        ({"rule": RULE, "start": 1330560000, "end": "2012-04-01"}, "YYYY-MM-DD"),
        ({"rule": RULE, "symbols": [], "start": "2012-03-01", "end": "2012-04-01"}, "at least"),
        ({"rule": RULE, "symbols": ["A"] * 51, "start": "2012-03-01", "end": "2012-04-01"}, "50"),
        ({"rule": RULE, "start": "2012-03-01", "end": "2012-04-01", "x": 1}, "x"),
    ],
)
async def test_bad_input_is_a_422(api: httpx.AsyncClient, body: dict[str, Any], says: str) -> None:
    r = await api.post("/api/alerts/backtest", json=body)
    assert r.status_code == 422, r.text
    assert says in r.json()["error"]["message"]
