"""The HTTP limits (docs/contracts.md, "Limits") against the real service and Redis: a body over
``MARKETPULSE_HTTP_MAX_BODY`` is 413 ``payload_too_large`` whether it declares its length or
not, and nothing of it is stored; the alert and symbol caps answer 409 and change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from support.harness import Server, serve, settings_for

ALERT = {"symbol": "AAPL", "alert_type": "price_threshold", "threshold": 150, "comparison": "above"}
MAX_BODY = 2048


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[Server]:
    settings = settings_for(redis_url, http_max_body=MAX_BODY, max_alerts=2, max_symbols=2)
    async with serve(settings) as s:
        yield s


def _padded(n: int) -> bytes:
    """A JSON alert body of exactly ``n`` bytes (spaces before the closing brace)."""
    head = b'{"symbol":"AAPL","alert_type":"price_threshold","threshold":150,"comparison":"above"'
    return head + b" " * (n - len(head) - 1) + b"}"


async def test_a_body_at_the_limit_is_read(server: Server) -> None:
    r = await server.http.post(
        "/api/alerts", content=_padded(MAX_BODY), headers={"content-type": "application/json"}
    )
    assert r.status_code == 201, r.text


async def test_a_declared_body_over_the_limit_is_413_and_nothing_is_stored(
    server: Server, redis_client: Redis
) -> None:
    r = await server.http.post(
        "/api/alerts", content=_padded(MAX_BODY + 1), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert str(MAX_BODY) in r.json()["error"]["message"]
    assert (await server.http.get("/api/alerts")).json()["alerts"] == []


async def test_a_chunked_body_over_the_limit_is_counted_as_it_arrives(server: Server) -> None:
    chunks = [_padded(MAX_BODY * 4)[i : i + 512] for i in range(0, MAX_BODY * 4, 512)]

    async def stream() -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    r = await server.http.post(
        "/api/alerts", content=stream(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers  # sent chunked: no length to trust
    assert r.status_code == 413
    assert r.json() == {
        "error": {
            "code": "payload_too_large",
            "message": f"the request body is over {MAX_BODY} bytes",
        }
    }
    assert (await server.http.get("/api/alerts")).json()["alerts"] == []


async def test_alerts_past_the_cap_are_409_until_one_is_deleted(server: Server) -> None:
    ids = []
    for threshold in (100, 200):
        r = await server.http.post("/api/alerts", json=ALERT | {"threshold": threshold})
        assert r.status_code == 201
        ids.append(r.json()["id"])
    r = await server.http.post("/api/alerts", json=ALERT | {"threshold": 300})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "too_many_alerts"
    assert len((await server.http.get("/api/alerts")).json()["alerts"]) == 2
    assert (await server.http.delete(f"/api/alerts/{ids[0]}")).status_code == 204
    assert (await server.http.post("/api/alerts", json=ALERT)).status_code == 201


async def test_symbols_past_the_cap_are_409_but_a_monitored_one_may_be_added_again(
    server: Server,
) -> None:
    for sym in ("AAPL", "MSFT"):
        assert (await server.http.post("/api/symbols", json={"symbol": sym})).status_code == 201
    r = await server.http.post("/api/symbols", json={"symbol": "GOOGL"})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "too_many_symbols"
    again = await server.http.post("/api/symbols", json={"symbol": "AAPL"})
    assert again.status_code == 201 and again.json()["added"] is False
    assert (await server.http.get("/api/symbols")).json()["symbols"] == ["AAPL", "MSFT"]
    assert (await server.http.delete("/api/symbols/MSFT")).status_code == 204
    assert (await server.http.post("/api/symbols", json={"symbol": "GOOGL"})).status_code == 201
