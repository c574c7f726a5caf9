"""A model-based test of the session store on the real Redis: a Hypothesis state machine runs
random sequences of create, change holdings, start, append (current and superseded runs,
duplicates), restart, cancel, revalue (prices, rates, flags, old ticks, old holdings) and expire
against a plain Python model of docs/contracts.md, and after every step the state read back
from Redis equals the model's: holdings, basis, the current run, the results (capped, in order)
and the money exactly as sent. Two regressions are pinned by hand: an empty JSON array must not
come back as an object (Lua's cjson turns ``[]`` into ``{}``), and money must keep all 17
significant digits (cjson keeps 14)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from marketpulse.errors import NotInPortfolio, SessionExists, SessionNotFound
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.sessions.portfolio import canonical_map, canonical_prices, value
from marketpulse.sessions.store import Revaluation, SessionStore, hash_token

T = TypeVar("T")
SIDS = ("s1", "s2")
TICKERS = ("AAPL", "MSFT", "TCS.NS")
METRICS = ("portfolio_risk", "concentration", "correlation", "momentum", "allocation_score")
CAP = 7  # results kept: small, so the cap is exercised
MAX_RESTARTS = 2
TOKEN = "tok"
TH = hash_token(TOKEN)


@dataclass
class Run:
    run_id: str
    ticker: str
    basis: int
    status: str = "running"
    restarts: int = 0
    done: set[str] = field(default_factory=set)


@dataclass
class Model:
    """One session as docs/contracts.md says it must be."""

    holdings: dict[str, float]
    total: float
    prices: dict[str, float]
    fx: dict[str, float]
    hv: int = 1
    basis: int = 1
    tick: int = 0
    flags: list[str] = field(default_factory=list)
    run: Run | None = None
    old_runs: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)


holdings_st = st.dictionaries(
    st.sampled_from(TICKERS),
    st.floats(min_value=0.001, max_value=1e9, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=3,
)
# a few prices, so a revaluation often moves only the rate, or nothing at all
price_st = st.sampled_from((1.0, 2.5, 0.1 + 0.2, 12345.678901234567))


class SessionStoreMachine(RuleBasedStateMachine):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = RedisClient.from_url(url)
        self.store = SessionStore(self.redis, ttl_s=600, results_cap=CAP)
        self.run(self.redis.call("FLUSHDB"))
        self.sessions: dict[str, Model] = {}
        self.clock = 0
        self.ids = 0

    def teardown(self) -> None:
        self.run(self.redis.aclose())
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def now(self) -> str:
        self.clock += 1
        return f"2026-12-06T12:{self.clock // 60 % 60:02d}:{self.clock % 60:02d}.000Z"

    def fresh_id(self, kind: str) -> str:
        self.ids += 1
        return f"{kind}{self.ids}"

    # -- client actions ------------------------------------------------------------------------

    @rule(sid=st.sampled_from(SIDS), holdings=holdings_st, px=price_st)
    def create(self, sid: str, holdings: dict[str, float], px: float) -> None:
        prices = {t: px for t in holdings}
        val = value(holdings, prices, 0)
        if sid in self.sessions:
            with pytest.raises(SessionExists):
                self.run(self.store.create(sid, TH, holdings, val, self.now()))
            return
        self.run(self.store.create(sid, TH, holdings, val, self.now()))
        self.sessions[sid] = Model(dict(holdings), val.total_value, prices, dict(val.fx))

    @rule(sid=st.sampled_from(SIDS), holdings=holdings_st, px=price_st)
    def set_holdings(self, sid: str, holdings: dict[str, float], px: float) -> None:
        prices = {t: px for t in holdings}
        val = value(holdings, prices, 0)
        m = self.sessions.get(sid)
        if m is None:
            with pytest.raises(SessionNotFound):
                self.run(self.store.set_holdings(sid, TH, holdings, val, self.now()))
            return
        basis = self.run(self.store.set_holdings(sid, TH, holdings, val, self.now()))
        m.holdings, m.prices, m.total, m.fx = dict(holdings), prices, val.total_value, dict(val.fx)
        m.hv += 1
        m.basis += 1
        m.flags = []
        assert basis == m.basis

    @rule(sid=st.sampled_from(SIDS), ticker=st.sampled_from((*TICKERS, "ZZZ")))
    def start(self, sid: str, ticker: str) -> None:
        run_id = self.fresh_id("r")
        m = self.sessions.get(sid)
        if m is None:
            with pytest.raises(SessionNotFound):
                self.run(self.store.start_analysis(sid, TH, ticker, run_id, self.now()))
            return
        if ticker not in m.holdings:
            with pytest.raises(NotInPortfolio):
                self.run(self.store.start_analysis(sid, TH, ticker, run_id, self.now()))
            return
        snap = self.run(self.store.start_analysis(sid, TH, ticker, run_id, self.now()))
        run = m.run
        if run is not None and run.status == "running" and run.ticker == ticker:
            # the same ticker still queued (no worker has read it): the run answers again
            assert snap.already_running and snap.run_id == run.run_id
            return
        assert not snap.already_running and snap.run_id == run_id
        assert snap.basis_version == m.basis and snap.holdings == m.holdings
        if run is not None:
            m.old_runs.append(run.run_id)
        m.run = Run(run_id, ticker, m.basis)

    @rule(sid=st.sampled_from(SIDS))
    def cancel(self, sid: str) -> None:
        m = self.sessions.get(sid)
        if m is None:
            with pytest.raises(SessionNotFound):
                self.run(self.store.cancel_analysis(sid, TH, self.now()))
            return
        got = self.run(self.store.cancel_analysis(sid, TH, self.now()))
        if m.run is not None and m.run.status == "running":
            assert got == m.run.run_id
            m.run.status = "cancelled"
        else:
            assert got is None

    # -- the run's own steps -------------------------------------------------------------------

    @rule(
        sid=st.sampled_from(SIDS),
        metric=st.sampled_from(METRICS),
        old=st.booleans(),
        stale_basis=st.booleans(),
    )
    def append(self, sid: str, metric: str, old: bool, stale_basis: bool) -> None:
        m = self.sessions.get(sid)
        if m is None or m.run is None:
            return
        run_id = m.old_runs[-1] if old and m.old_runs else m.run.run_id
        basis = m.run.basis - 1 if stale_basis else m.run.basis
        rid = f"{run_id}:{metric}"
        body = json.dumps(
            {"ticker": m.run.ticker, "metric": metric, "value": [], "run_id": run_id,
             "basis_version": basis, "id": rid, "details": {"pairs": []}},
            separators=(",", ":"),
        )  # fmt: skip
        got = self.run(self.store.append_result(sid, run_id, basis, rid, body, len(METRICS)))
        run = m.run
        if run_id != run.run_id:
            want = "superseded"
        elif rid in run.done:
            want = "dup"
        elif run.status != "running":
            want = "superseded"
        elif basis != m.basis:
            want = "stale"
        else:
            run.done.add(rid)
            m.results.append(body)
            want = "ok"
            if len(run.done) >= len(METRICS):
                run.status = want = "complete"
        assert got == want

    @rule(sid=st.sampled_from(SIDS))
    def restart(self, sid: str) -> None:
        m = self.sessions.get(sid)
        if m is None or m.run is None:
            return
        run = m.run
        new_id = self.fresh_id("r")
        got = self.run(
            self.store.restart_analysis(sid, run.run_id, new_id, MAX_RESTARTS, self.now())
        )
        if run.status != "running":
            assert got == "superseded"
            return
        if run.ticker not in m.holdings or run.restarts + 1 > MAX_RESTARTS:
            assert got == "failed"
            run.status = "failed"
            return
        assert not isinstance(got, str) and got.run_id == new_id and got.basis_version == m.basis
        m.old_runs.append(run.run_id)
        m.run = Run(new_id, run.ticker, m.basis, restarts=run.restarts + 1)

    # -- the valuation sweep and expiry ----------------------------------------------------------

    @rule(
        sid=st.sampled_from(SIDS),
        px=price_st,
        rate=st.sampled_from((1.0, 0.5, 0.1 + 0.2)),
        unavailable=st.booleans(),
        old_tick=st.booleans(),
        old_hv=st.booleans(),
    )
    def revalue(
        self, sid: str, px: float, rate: float, unavailable: bool, old_tick: bool, old_hv: bool
    ) -> None:
        m = self.sessions.get(sid)
        tick = (m.tick if old_tick else m.tick + 1) if m is not None else 1
        hv = str((m.hv - 1) if (m is not None and old_hv) else (m.hv if m else 1)).encode()
        prices = {t: px for t in (m.holdings if m else {"AAPL": 1.0})}
        fx = {"USD": rate}
        total = math.fsum(q * px * rate for q in (m.holdings.values() if m else [1.0]))
        flags = '["fx_unavailable"]' if unavailable else "[]"
        r = Revaluation(
            sid, hv, None if unavailable else total, canonical_prices(prices), canonical_map(fx),
            flags,
        )  # fmt: skip
        (got,), _ = self.run(self.store.revalue_many(tick, self.now(), [r], []))
        if m is None:
            assert got == "gone"
            return
        if old_hv:  # valued for holdings that moved on: the current ones come back instead
            assert not isinstance(got, str) and not isinstance(got, Exception)
            assert got.holdings == m.holdings and got.version == str(m.hv).encode()
            return
        if old_tick:
            assert got == "unchanged"
            return
        m.tick = tick
        new_flags = json.loads(flags)
        if unavailable:  # the last good valuation kept, flagged
            assert got == ("unchanged" if new_flags == m.flags else "updated")
            m.flags = new_flags
            return
        moved = canonical_prices(prices) != canonical_prices(m.prices) or fx != m.fx
        if not moved and new_flags == m.flags:
            assert got == "unchanged"
            return
        assert got == "updated"
        if moved:
            m.basis += 1
        m.prices, m.fx, m.total, m.flags = prices, fx, total, new_flags

    @rule(sid=st.sampled_from(SIDS))
    def expire(self, sid: str) -> None:
        self.run(self.redis.call("EXPIRE", keys.session(sid), 0))  # expired now
        self.sessions.pop(sid, None)

    @precondition(lambda self: bool(self.sessions))
    @invariant()
    def state_matches_the_model(self) -> None:
        for sid in SIDS:
            m = self.sessions.get(sid)
            if m is None:
                with pytest.raises(SessionNotFound):
                    self.run(self.store.read(sid, TH, self.now()))
                continue
            state = self.run(self.store.read(sid, TH, self.now()))
            assert state["holdings"] == m.holdings
            assert state["basis_version"] == m.basis
            assert state["total_value"] == m.total  # every digit, as sent
            assert state["prices"] == m.prices and state["fx"] == m.fx
            assert state["flags"] == m.flags
            assert [json.dumps(r, separators=(",", ":")) for r in state["analysis_results"]] == (
                m.results[-CAP:]
            )
            cur = state["current_analysis"]
            if m.run is None:
                assert cur is None
            else:
                assert cur["run_id"] == m.run.run_id and cur["ticker"] == m.run.ticker
                assert cur["basis_version"] == m.run.basis
                assert cur["status"] == m.run.status


def test_the_session_store_behaves_as_its_model(redis_url: str) -> None:
    class OnTheSuiteRedis(SessionStoreMachine):
        def __init__(self) -> None:
            super().__init__(redis_url)

    run_state_machine_as_test(
        OnTheSuiteRedis,
        settings=settings(
            max_examples=40,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


async def test_an_empty_array_stays_an_array(redis_boundary: RedisClient) -> None:
    """Lua's cjson decodes ``[]`` and ``{}`` to the same empty table and encodes it as ``{}``:
    the scripts never decode our JSON, so an empty array comes back an array."""
    store = SessionStore(redis_boundary, ttl_s=600)
    val = value({"AAPL": 1.0}, {"AAPL": 10.0}, 0)
    await store.create("arr", TH, {"AAPL": 1.0}, val, "2026-12-06T12:00:00.000Z")
    snap = await store.start_analysis("arr", TH, "AAPL", "r1", "2026-12-06T12:00:01.000Z")
    body = '{"ticker":"AAPL","metric":"momentum","value":null,"details":{"pairs":[]},"id":"r1:m"}'
    assert await store.append_result("arr", "r1", snap.basis_version, "r1:m", body, 5) == "ok"
    state = await store.read("arr", TH, "2026-12-06T12:00:02.000Z")
    assert state["flags"] == [] and state["analysis_results"][0]["details"] == {"pairs": []}


async def test_money_keeps_seventeen_significant_digits(redis_boundary: RedisClient) -> None:
    """Lua's cjson keeps 14 significant digits; money and prices are text built in Python and
    only copied by the scripts, so every digit survives a create and a revaluation."""
    store = SessionStore(redis_boundary, ttl_s=600)
    price = 0.1 + 0.2  # 0.30000000000000004: 17 significant digits
    val = value({"AAPL": 1.0}, {"AAPL": price}, 0)
    await store.create("money", TH, {"AAPL": 1.0}, val, "2026-12-06T12:00:00.000Z")
    created = await store.read("money", TH, "2026-12-06T12:00:01.000Z")
    assert created["prices"]["AAPL"] == price and created["total_value"] == round(price, 2)
    total, moved = 123456789012.34567, 1 / 3
    r = Revaluation("money", b"1", total, canonical_prices({"AAPL": moved}), '{"USD":1.0}', "[]")
    (outcome,), _ = await store.revalue_many(1, "2026-12-06T12:00:02.000Z", [r], [])
    assert outcome == "updated"
    state = await store.read("money", TH, "2026-12-06T12:00:03.000Z")
    assert state["total_value"] == total and repr(state["total_value"]) == repr(total)
    assert state["prices"]["AAPL"] == moved
