"""Sessions in a base currency (docs/contracts.md, "Currencies"): each holding keeps its price in
its own currency, ``fx`` converts it into the session's base, ``total_value`` is
Σ q × price × fx[currency]; the weights of every metric follow base-currency values; a missing
rate is never 1:1 (``fx_unavailable``, the last good valuation kept, flagged); a change of base
is a basis change, and it never loses a concurrent holdings change (nor the reverse)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from marketpulse.errors import FxUnavailable, PermanentSourceError
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.clock import RedisTickClock
from marketpulse.market.fx import parse_pair
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.quotes import Bar
from marketpulse.market.view import Market
from marketpulse.sessions.portfolio import canonical_map, canonical_prices
from marketpulse.sessions.service import SessionService
from marketpulse.sessions.store import Revaluation, SessionStore
from marketpulse.sessions.valuation import ValuationLoop
from support.harness import Server, serve, settings_for

MIXED = {"AAPL": 10.0, "TCS.NS": 100.0}
DEADLINE = 20.0


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[Server]:
    async with serve(settings_for(redis_url)) as s:
        yield s


async def _create(server: Server, body: dict[str, object]) -> dict[str, object]:
    r = await server.http.post("/api/sessions", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, object] = r.json()
    return data


def _total(state: dict[str, object]) -> float:
    holdings = state["holdings"]
    prices = state["prices"]
    currencies = state["currencies"]
    fx = state["fx"]
    assert isinstance(holdings, dict) and isinstance(prices, dict)
    assert isinstance(currencies, dict) and isinstance(fx, dict)
    return math.fsum(q * prices[t] * fx[currencies[t]] for t, q in holdings.items())


async def test_a_usd_session_values_rupees_in_dollars(server: Server) -> None:
    data = await _create(server, {"holdings": MIXED, "session_id": "usd"})
    state = data["state"]
    assert isinstance(state, dict)
    assert state["base_currency"] == "USD"
    assert state["currencies"] == {"AAPL": "USD", "TCS.NS": "INR"}
    assert state["fx"]["USD"] == 1.0
    assert 1 / 120 < state["fx"]["INR"] < 1 / 60  # dollars per rupee
    assert state["total_value"] == round(_total(state), 2)  # to the cent
    assert state["flags"] == []

    client = await server.connect("usd", str(data["token"]))
    try:
        await client.send({"action": "analyze", "ticker": "TCS.NS"})
        result = await client.next("analysis_result", within=DEADLINE, metric="concentration")
    finally:
        await client.close()
    value_inr = MIXED["TCS.NS"] * state["prices"]["TCS.NS"] * state["fx"]["INR"]
    assert result["value"] == pytest.approx(value_inr / _total(state), abs=1e-6)
    details = result["details"]
    assert details["base_currency"] == "USD" and details["currency"] == "INR"
    assert details["fx_rate"] == state["fx"]["INR"]
    assert details["asynchronous_markets"] is True


async def test_an_inr_session_values_dollars_in_rupees(server: Server) -> None:
    data = await _create(server, {"holdings": MIXED, "base_currency": "INR"})
    state = data["state"]
    assert isinstance(state, dict)
    assert state["base_currency"] == "INR"
    assert state["fx"]["INR"] == 1.0 and 60 < state["fx"]["USD"] < 120
    assert state["total_value"] == round(_total(state), 2)

    client = await server.connect(str(data["session_id"]), str(data["token"]))
    try:
        await client.send({"action": "analyze", "ticker": "AAPL"})
        result = await client.next("analysis_result", within=DEADLINE, metric="concentration")
    finally:
        await client.close()
    value_usd = MIXED["AAPL"] * state["prices"]["AAPL"] * state["fx"]["USD"]
    assert result["value"] == pytest.approx(value_usd / _total(state), abs=1e-6)


async def test_an_unknown_currency_is_refused_with_invalid_currency(server: Server) -> None:
    for code in ("XYZ", "usdollar", "", "12$", "inr", " INR", "ZWL"):  # ZWL: no rates
        r = await server.http.post("/api/sessions", json={"holdings": MIXED, "base_currency": code})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] in ("invalid_currency", "invalid_input"), r.text
    r = await server.http.post("/api/sessions", json={"holdings": MIXED, "base_currency": "XYZ"})
    assert r.json()["error"]["code"] == "invalid_currency"
    sid, token, _ = await server.create_session(MIXED)
    r = await server.http.put(
        f"/api/sessions/{sid}/base_currency",
        json={"base_currency": "ABC"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_currency", r.text


async def test_a_new_base_currency_is_a_basis_change(server: Server) -> None:
    sid, token, before = await server.create_session(MIXED)
    client = await server.connect(sid, token)
    try:
        r = await server.http.put(
            f"/api/sessions/{sid}/base_currency",
            json={"base_currency": "INR"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        after = r.json()
        update = await client.next("portfolio_update", within=DEADLINE)
    finally:
        await client.close()
    assert after["base_currency"] == "INR" and after["holdings"] == before["holdings"]
    assert after["basis_version"] == before["basis_version"] + 1
    assert after["total_value"] == round(_total(after), 2)
    assert update["base_currency"] == "INR" and update["fx"] == after["fx"]
    assert update["basis_version"] == after["basis_version"]
    # the same market tick: the same amount, in rupees
    assert after["total_value"] == pytest.approx(
        before["total_value"] * after["fx"]["USD"], rel=1e-6
    )


class _NoRates:
    """The simulated market with its exchange rates switched off and on (a source we own)."""

    name = "simulated"

    def __init__(self) -> None:
        self.inner = SimulatedSource(seed=7)
        self.rates_on = True

    def knows(self, symbol: str) -> bool:
        return self.inner.knows(symbol) and (self.rates_on or parse_pair(symbol) is None)

    def currency(self, symbol: str) -> str:
        return self.inner.currency(symbol)

    def bar(self, symbol: str, tick: int) -> Bar:
        if not self.knows(symbol):
            raise PermanentSourceError(f"no rate for {symbol}")
        return self.inner.bar(symbol, tick)

    def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        if not self.knows(symbol):
            raise PermanentSourceError(f"no rate for {symbol}")
        return self.inner.history(symbol, tick, n)


async def test_no_rate_source_means_fx_unavailable_never_one_to_one(
    redis_boundary: RedisClient,
) -> None:
    source = _NoRates()
    market = Market(source=source)  # no reference rates either: every rate source is gone
    store = SessionStore(redis_boundary, ttl_s=600)
    clock = RedisTickClock(redis_boundary)
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    service = SessionService(store, market, clock, now=lambda: now)
    loop = ValuationLoop(store, market, interval_s=60.0, now=lambda: now, clock=clock)

    source.rates_on = False
    with pytest.raises(FxUnavailable):
        await service.create("nofx", MIXED)
    assert not await store.exists("nofx")
    with pytest.raises(FxUnavailable):
        await market.rates(["INR"], "USD", 0)
    assert (await service.create("usdonly", {"AAPL": 1.0}))[2]["flags"] == []

    source.rates_on = True
    sid, token, good = await service.create("mixed", MIXED)
    source.rates_on = False
    await loop.run_once()
    kept = await service.read(sid, token)
    assert kept["flags"] == ["fx_unavailable"]
    assert kept["total_value"] == good["total_value"] and kept["fx"] == good["fx"]
    assert kept["prices"] == good["prices"] and kept["basis_version"] == good["basis_version"]

    source.rates_on = True
    await loop.run_once()
    back = await service.read(sid, token)
    assert back["flags"] == [] and back["basis_version"] > good["basis_version"]
    assert back["total_value"] == round(_total(back), 2)


async def test_a_base_change_and_a_holdings_change_racing_both_land(
    redis_boundary: RedisClient,
) -> None:
    store = SessionStore(redis_boundary, ttl_s=600)
    market = Market(source=SimulatedSource(seed=3))
    service = SessionService(store, market, RedisTickClock(redis_boundary))
    for round_ in range(20):
        sid, token, _ = await service.create(f"race{round_}", MIXED)
        new_holdings = {"AAPL": 3.0, "TCS.NS": 7.0, "INFY.NS": float(round_ + 1)}
        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(
                service.set_base_currency(sid, token, "EUR"),
                service.set_holdings(sid, token, new_holdings),
            )
        state = await service.read(sid, token)
        assert state["base_currency"] == "EUR" and state["holdings"] == new_holdings
        assert set(state["fx"]) == {"EUR", "USD", "INR"}
        assert state["total_value"] == round(_total(state), 2)


async def test_a_moved_rate_alone_is_a_new_basis(redis_boundary: RedisClient) -> None:
    """Guarantee 2 covers rates: a revaluation whose prices are unchanged but whose rate moved
    bumps the basis (a running analysis restarts) and publishes it with ``fx``."""
    store = SessionStore(redis_boundary, ttl_s=600)
    market = Market(source=SimulatedSource(seed=5))
    service = SessionService(store, market, RedisTickClock(redis_boundary))
    sid, token, state = await service.create("rate", MIXED)
    at = (await store.revalue_many(0, "2026-12-06T12:00:00Z", [], [sid]))[1][0]
    assert at is not None and at.currencies == {"AAPL": "USD", "TCS.NS": "INR"}
    prices_text = canonical_prices(state["prices"])

    def revaluation(rate: float) -> Revaluation:
        fx = {"USD": 1.0, "INR": rate}
        total = round(_total({**state, "fx": fx}), 2)
        return Revaluation(sid, at.version, total, prices_text, canonical_map(fx), "[]")

    (same,), _ = await store.revalue_many(10, "t1", [revaluation(state["fx"]["INR"])], [])
    assert same == "unchanged"
    (moved,), _ = await store.revalue_many(11, "t2", [revaluation(0.0111)], [])
    assert moved == "updated"
    after = await service.read(sid, token)
    assert after["basis_version"] == state["basis_version"] + 1
    assert after["fx"]["INR"] == 0.0111 and after["prices"] == state["prices"]


class _Guessing(_NoRates):
    """A fallback source that prices TCS.NS in dollars when switched (a source we own)."""

    def __init__(self) -> None:
        super().__init__()
        self.guess_usd = False

    def currency(self, symbol: str) -> str:
        if self.guess_usd and symbol == "TCS.NS":
            return "USD"
        return super().currency(symbol)


async def test_a_quote_in_another_currency_is_not_mixed_in(redis_boundary: RedisClient) -> None:
    """A holding's currency is its first good quote's: a later quote in another currency (a
    fallback source guessing) is not valued with the holding's rate; the last good valuation is
    kept, flagged ``currency_mismatch``, until the quotes agree again."""
    source = _Guessing()
    market = Market(source=source)
    store = SessionStore(redis_boundary, ttl_s=600)
    clock = RedisTickClock(redis_boundary)
    service = SessionService(store, market, clock)
    loop = ValuationLoop(store, market, interval_s=60.0, clock=clock)
    sid, token, good = await service.create("guess", MIXED)
    source.guess_usd = True
    await loop.run_once()
    kept = await service.read(sid, token)
    assert kept["flags"] == ["currency_mismatch"] and kept["currencies"]["TCS.NS"] == "INR"
    assert kept["total_value"] == good["total_value"] and kept["prices"] == good["prices"]
    source.guess_usd = False
    await loop.run_once()
    back = await service.read(sid, token)
    assert back["flags"] == [] and back["total_value"] == round(_total(back), 2)
