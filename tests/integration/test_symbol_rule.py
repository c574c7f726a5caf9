"""One symbol rule on every surface of the real app: ``M&M.NS`` can be held, analysed and
alerted on; an invalid symbol is refused by each surface with that surface's error code."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.harness import Server, serve, settings_for

SYMBOL = "M&M.NS"
BAD = "M$M.NS"
ALERT = {"alert_type": "price_threshold", "threshold": 1, "comparison": "above"}


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[Server]:
    async with serve(settings_for(redis_url)) as s:
        yield s


async def test_a_symbol_with_an_ampersand_is_held_analysed_and_alerted_on(server: Server) -> None:
    sid, token, state = await server.create_session({SYMBOL.lower(): 1, "AAPL": 2})
    assert state["holdings"] == {SYMBOL: 1, "AAPL": 2}
    assert state["prices"][SYMBOL] > 0
    c = await server.connect(sid, token)
    await c.send({"action": "analyze", "ticker": SYMBOL})
    run = await c.next("analysis_started", ticker=SYMBOL)
    await c.next("analysis_complete", run_id=run["run_id"])
    assert len([r for r in c.of("analysis_result") if r["run_id"] == run["run_id"]]) == 5
    await c.close()

    alert = await server.http.post("/api/alerts", json=ALERT | {"symbol": SYMBOL})
    assert alert.status_code == 201 and alert.json()["symbol"] == SYMBOL
    watched = await server.http.post("/api/symbols", json={"symbol": SYMBOL})
    assert watched.status_code == 201 and SYMBOL in watched.json()["symbols"]
    quote = await server.http.get(f"/api/quotes/{SYMBOL}")
    assert quote.status_code == 200 and quote.json()["symbol"] == SYMBOL
    assert (await server.http.delete(f"/api/symbols/{SYMBOL}")).status_code == 204


async def test_an_invalid_symbol_is_refused_on_every_surface(server: Server) -> None:
    created = await server.http.post("/api/sessions", json={"holdings": {BAD: 1}})
    assert created.status_code == 422
    assert created.json()["error"]["code"] == "invalid_ticker"

    sid, token, _ = await server.create_session({SYMBOL: 1})
    c = await server.connect(sid, token)
    await c.send({"action": "analyze", "ticker": BAD})
    assert (await c.next("error"))["code"] == "invalid_ticker"
    await c.close()

    for path, body in (("/api/alerts", ALERT | {"symbol": BAD}), ("/api/symbols", {"symbol": BAD})):
        r = await server.http.post(path, json=body)
        assert r.status_code == 422, path
        err = r.json()["error"]
        assert err["code"] == "invalid_input" and "invalid symbol" in err["message"], path
    for r in (
        await server.http.get(f"/api/quotes/{BAD}"),
        await server.http.get("/api/alerts/history", params={"symbol": BAD}),
        await server.http.delete(f"/api/symbols/{BAD}"),
    ):
        assert r.status_code == 422, r.url
        assert r.json()["error"]["code"] == "invalid_symbol", r.url
