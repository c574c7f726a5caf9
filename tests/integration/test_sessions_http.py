"""The HTTP contract of sessions, against a real server and a real Redis."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from typing import cast

import pytest

from support.harness import Server, serve, settings_for

HOLDINGS = {"AAPL": 100, "GOOGL": 50, "MSFT": 75}


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[Server]:
    async with serve(settings_for(redis_url)) as s:
        yield s


async def test_create_returns_token_and_the_documented_state(server: Server) -> None:
    sid, token, state = await server.create_session(HOLDINGS, "user-123")
    assert sid == "user-123" and len(token) >= 43
    assert set(state) == {
        "session_id", "holdings", "total_value", "current_analysis", "analysis_results",
        "last_activity", "version", "basis_version", "prices", "valued_at",
        "base_currency", "currencies", "fx", "flags",
    }  # fmt: skip
    assert state["base_currency"] == "USD" and state["fx"] == {"USD": 1.0}
    assert state["currencies"] == {"AAPL": "USD", "GOOGL": "USD", "MSFT": "USD"}
    assert state["flags"] == []
    assert state["holdings"] == {"AAPL": 100, "GOOGL": 50, "MSFT": 75}
    expected = round(sum(q * state["prices"][t] for t, q in HOLDINGS.items()), 2)
    assert state["total_value"] == pytest.approx(expected)
    assert state["basis_version"] == 1 and state["analysis_results"] == []
    assert state["last_activity"].endswith("Z") and state["valued_at"].endswith("Z")


async def test_duplicate_id_is_409(server: Server) -> None:
    await server.create_session(HOLDINGS, "dup")
    r = await server.http.post("/api/sessions", json={"session_id": "dup", "holdings": HOLDINGS})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "session_exists"


async def test_wrong_or_foreign_token_looks_like_a_missing_session(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS, "mine")
    _, other_token, _ = await server.create_session(HOLDINGS, "theirs")
    missing = await server.http.get(
        "/api/sessions/nope", headers={"Authorization": f"Bearer {token}"}
    )
    wrong = await server.http.get(f"/api/sessions/{sid}", headers={"Authorization": "Bearer x" * 3})
    foreign = await server.http.get(
        f"/api/sessions/{sid}", headers={"Authorization": f"Bearer {other_token}"}
    )
    none = await server.http.get(f"/api/sessions/{sid}")
    for r in (wrong, foreign, none):
        assert r.status_code == missing.status_code == 404
        assert r.json() == missing.json()
    ok = await server.http.get(f"/api/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()["session_id"] == sid


async def test_token_is_stored_only_as_a_hash(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS, "hashed")
    raw = await server.state["redis"].redis.hgetall(f"mp:{{{sid}}}:session")
    assert token.encode() not in b"".join(cast(dict[bytes, bytes], raw).values())


async def test_put_holdings_bumps_basis_and_delete_removes(server: Server) -> None:
    sid, token, state = await server.create_session(HOLDINGS, "h")
    auth = {"Authorization": f"Bearer {token}"}
    r = await server.http.put(
        f"/api/sessions/{sid}/holdings", json={"holdings": {"AAPL": 10}}, headers=auth
    )
    assert r.status_code == 200
    assert r.json()["basis_version"] == state["basis_version"] + 1
    assert r.json()["holdings"] == {"AAPL": 10}
    assert (await server.http.delete(f"/api/sessions/{sid}", headers=auth)).status_code == 204
    assert (await server.http.get(f"/api/sessions/{sid}", headers=auth)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"holdings": {}},
        {"holdings": {"AAPL": -1}},
        {"holdings": {"AAPL": 0}},
        {"holdings": {"not a ticker!": 1}},
        {"holdings": {"AAPL": "many"}},
        {"holdings": {"AAPL": "100"}},  # a number as text is not a number: never coerced
        {"holdings": {"AAPL": True}},
        {"holdings": {"AAPL": 2e12}},  # more than MAX_QUANTITY shares
        {"holdings": {" AAPL": 1}},  # the schema's ticker pattern, as sent
        {"holdings": {"AAPL": 1, "aapl": -1}},  # each quantity as sent, before summing
        {"holdings": {f"T{i}": 1 for i in range(101)}},
        {"holdings": {"AAPL": 1}, "session_id": "bad id with spaces"},
        {"holdings": {"AAPL": 1}, "session_id": "user-1\n"},  # the pattern is the whole id
        {"holdings": {"AAPL": 1}, "surprise": True},
        {},
    ],
)
async def test_bad_input_is_422_with_a_clear_error_and_nothing_stored(
    server: Server, body: dict[str, object]
) -> None:
    r = await server.http.post("/api/sessions", json=body)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] in {"invalid_input", "invalid_ticker"} and err["message"]
    assert await server.state["redis"].redis.zcard("mp:sessions") == 0


async def test_not_json_is_422(server: Server) -> None:
    r = await server.http.post(
        "/api/sessions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "error" in r.json()


async def test_a_body_that_is_not_text_is_a_described_400(server: Server) -> None:
    r = await server.http.post(
        "/api/sessions", content=b"{\x80}", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "http_error"
    described = (await server.http.get("/openapi.json")).json()
    assert "400" in described["paths"]["/api/sessions"]["post"]["responses"]


async def test_a_ticker_in_either_case_is_upper_cased(server: Server) -> None:
    _, _, state = await server.create_session({"aapl": 1, "AAPL": 2, "msft": 3})
    assert state["holdings"] == {"AAPL": 3, "MSFT": 3}


async def test_serve_freezes_the_heap_once_start_up_is_done(redis_url: str) -> None:
    before = gc.get_freeze_count()
    try:
        async with serve(settings_for(redis_url), freeze_heap=True) as srv:
            assert gc.get_freeze_count() > before  # what start-up built is out of the scans
            assert (await srv.http.get("/readyz")).status_code == 200
    finally:
        gc.unfreeze()  # give the test process its normal collector back
