"""docs/contracts.md guarantees 1-7, each tried against the real scripts on a real Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis

from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.client import RedisClient
from marketpulse.sessions.portfolio import value
from marketpulse.sessions.store import Revaluation, SessionStore, hash_token
from marketpulse.sessions.valuation import ValuationLoop
from support.harness import serve, settings_for

HOLDINGS = {"AAPL": 100, "GOOGL": 50, "MSFT": 75}
NOW = "2026-01-02T00:00:00.000Z"


PRICES = {"AAPL": 1.0, "GOOGL": 2.0, "MSFT": 3.0}


async def _session(store: SessionStore, sid: str = "s") -> str:
    th = hash_token("tok")
    await store.create(sid, th, HOLDINGS, value(HOLDINGS, PRICES, 0), NOW)
    return th


async def _indexed(redis_client: Redis) -> list[str]:
    """Every partition's sweep index, merged."""
    ids: list[str] = []
    for partition in partitions.ALL:
        got: Any = await redis_client.zrange(keys.session_index(partition), 0, -1)
        ids += [x.decode() for x in got]
    return sorted(ids)


async def test_revaluation_during_a_run_restarts_it_on_the_new_basis(redis_url: str) -> None:
    async with serve(settings_for(redis_url, metric_delay="0.3")) as server:
        sid, token, _ = await server.create_session(HOLDINGS)
        c = await server.connect(sid, token)
        await c.send({"action": "analyze", "ticker": "AAPL"})
        started = await c.next("analysis_started")
        await server.state["valuation"].run_once()
        update = await c.next("portfolio_update")
        assert update["basis_version"] == started["basis_version"] + 1
        restarted = await c.next("analysis_restarted")
        assert restarted["run_id"] != started["run_id"]
        assert restarted["basis_version"] == update["basis_version"]
        assert restarted["reason"] == "basis_changed"
        await c.next("analysis_complete", run_id=restarted["run_id"])
        results = c.of("analysis_result")
        assert {r["basis_version"] for r in results} == {update["basis_version"]}
        assert {r["run_id"] for r in results} == {restarted["run_id"]}
        await c.close()


async def test_restarts_are_bounded_then_unstable_basis(redis_url: str) -> None:
    async with serve(settings_for(redis_url, metric_delay="0.2", max_restarts=2)) as server:
        sid, token, _ = await server.create_session(HOLDINGS)
        c = await server.connect(sid, token)
        await c.send({"action": "analyze", "ticker": "MSFT"})
        await c.next("analysis_started")
        for _ in range(2):
            await server.state["valuation"].run_once()
            await c.next("analysis_restarted")
        await server.state["valuation"].run_once()
        failed = await c.next("analysis_failed")
        assert failed["reason"] == "unstable_basis" and failed["ticker"] == "MSFT"
        assert not c.of("analysis_result")
        await c.close()


async def test_a_revaluation_that_changes_nothing_bumps_nothing(redis_url: str) -> None:
    # replay with step 0 freezes the market: every tick shows the same prices
    settings = settings_for(redis_url, data_source="replay", replay_step=0)
    async with serve(settings) as server:
        sid, token, state = await server.create_session({"AAPL": 10, "IBM": 5})
        c = await server.connect(sid, token)
        reports = [await server.state["valuation"].run_once() for _ in range(3)]
        assert [r.updated for r in reports] == [0, 0, 0] and all(r.unchanged == 1 for r in reports)
        after = (
            await server.http.get(
                f"/api/sessions/{sid}", headers={"Authorization": f"Bearer {token}"}
            )
        ).json()
        assert after["basis_version"] == state["basis_version"]
        await c.send({"action": "ping"})
        await c.next("pong")
        assert not c.of("portfolio_update")
        await c.close()


async def test_revaluation_never_refreshes_ttl_nor_recreates_a_session(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    from marketpulse.market.providers import SimulatedSource
    from marketpulse.market.view import Market

    store = SessionStore(redis_boundary, ttl_s=3600)
    await _session(store, "a")
    await _session(store, "b")
    await redis_client.pexpire(keys.session("a"), 5000)
    await redis_client.delete(keys.session("b"))  # as if it expired
    loop = ValuationLoop(store, Market(SimulatedSource(seed=1)), interval_s=1)
    report = await loop.run_once()
    assert report.updated == 1 and report.gone == 1
    assert 0 < await redis_client.pttl(keys.session("a")) <= 5000
    assert not await redis_client.exists(keys.session("b"))
    assert await _indexed(redis_client) == ["a"]


async def test_a_sweep_between_indexing_and_writing_a_session_keeps_it_indexed(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    """create() indexes first, then writes the hash: a sweep in between sees it missing. It must
    stay indexed (and be revalued once written); a ghost past the grace is pruned."""
    from datetime import UTC, datetime

    from marketpulse.market.providers import SimulatedSource
    from marketpulse.market.view import Market
    from marketpulse.timefmt import iso_z

    store = SessionStore(redis_boundary, ttl_s=3600)
    now = iso_z(datetime.now(UTC))
    born = int(datetime.fromisoformat(now).timestamp() * 1000)
    for sid, score in (("young", born), ("ghost", 0)):  # step one only
        await redis_client.zadd(keys.session_index(keys.session_partition(sid)), {sid: score})
    loop = ValuationLoop(store, Market(SimulatedSource(seed=1)), interval_s=1)
    report = await loop.run_once()
    assert report.gone == 1  # the ghost
    assert await _indexed(redis_client) == ["young"]
    th = hash_token("tok")
    await store.create("young", th, HOLDINGS, value(HOLDINGS, PRICES, 0), now)  # step two
    report = await loop.run_once()
    assert report.updated == 1
    state = await store.read("young", th, now)
    assert state["prices"] != PRICES  # revalued at the new tick


async def test_a_retried_create_is_ok_and_another_create_of_the_id_is_refused(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    """The mux retries a write after a lost reply: the same create again must not answer
    'exists' (the client would get a 409 for a session that was made)."""
    from marketpulse.errors import SessionExists

    store = SessionStore(redis_boundary, ttl_s=3600)
    th = await _session(store, "s")
    await store.create("s", th, HOLDINGS, value(HOLDINGS, PRICES, 0), NOW)  # the retry
    with pytest.raises(SessionExists):
        await store.create("s", hash_token("other"), HOLDINGS, value(HOLDINGS, PRICES, 0), NOW)
    assert int(await redis_client.hget(keys.session("s"), "version") or 0) == 1


async def test_append_is_idempotent_on_the_result_id(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    store = SessionStore(redis_boundary, ttl_s=3600)
    th = await _session(store)
    snap = await store.start_analysis("s", th, "AAPL", "run1", NOW)
    body = json.dumps(
        {
            "ticker": "AAPL",
            "metric": "concentration",
            "value": 0.1,
            "timestamp": NOW,
            "run_id": "run1",
            "basis_version": snap.basis_version,
            "id": "run1:concentration",
        }
    )
    assert (
        await store.append_result("s", "run1", snap.basis_version, "run1:concentration", body, 5)
        == "ok"
    )
    version = int(await redis_client.hget(keys.session("s"), "version") or 0)
    # a retry of the same command after a lost reply
    assert (
        await store.append_result("s", "run1", snap.basis_version, "run1:concentration", body, 5)
        == "dup"
    )
    state = await store.read("s", th, NOW)
    assert [r["id"] for r in state["analysis_results"]] == ["run1:concentration"]
    assert state["version"] == version + 1  # only the read's touch moved it


async def test_a_start_retried_after_its_run_ended_starts_nothing(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    """The mux retries a start whose reply was lost; by then its run may have run to the end
    (the reply was held, the worker was not). The retry must not start that run again under
    the same run id: its results would be appended a second time (the append deduplicates
    within a run) and the session would say running with no worker coming."""
    store = SessionStore(redis_boundary, ttl_s=3600)
    th = await _session(store)
    snap = await store.start_analysis("s", th, "AAPL", "run1", NOW)
    for metric in ("portfolio_risk", "concentration"):
        rid = f"run1:{metric}"
        body = json.dumps({"id": rid, "run_id": "run1", "metric": metric})
        assert await store.append_result("s", "run1", snap.basis_version, rid, body, 2) in (
            "ok",
            "complete",
        )
    queued = await redis_client.xlen(keys.run_stream(keys.session_partition("s")))
    retry = await store.start_analysis("s", th, "AAPL", "run1", NOW)  # the same call again
    assert retry.run_id == "run1" and retry.already_running
    assert (
        await redis_client.xlen(keys.run_stream(keys.session_partition("s"))) == queued
    )  # nothing queued again
    body = json.dumps({"id": "run1:concentration", "run_id": "run1"})
    assert (
        await store.append_result("s", "run1", snap.basis_version, "run1:concentration", body, 2)
        != "ok"
    )
    state = await store.read("s", th, NOW)
    assert [r["id"] for r in state["analysis_results"]] == [
        "run1:portfolio_risk",
        "run1:concentration",
    ]
    assert state["current_analysis"]["status"] == "complete"


async def test_a_start_retried_after_a_newer_start_changes_nothing(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    """A start's reply lost, another client's start of another ticker commits, then the retry
    of the first arrives: the newer run stays current (the retry must not supersede it), and
    the retry answers with it. Run ids are remembered per session far enough back."""
    store = SessionStore(redis_boundary, ttl_s=3600)
    th = await _session(store)
    await store.start_analysis("s", th, "AAPL", "run1", NOW)
    for i in range(40):  # many more starts than the script remembers: the oldest are forgotten
        await store.start_analysis("s", th, ["MSFT", "GOOGL"][i % 2], f"later{i}", NOW)
    queued = await redis_client.xlen(keys.run_stream(keys.session_partition("s")))
    version = int(await redis_client.hget(keys.session("s"), "version") or 0)
    retry = await store.start_analysis("s", th, "GOOGL", "later20", NOW)
    assert retry.already_running and retry.run_id == "later39"
    assert await redis_client.xlen(keys.run_stream(keys.session_partition("s"))) == queued
    assert int(await redis_client.hget(keys.session("s"), "version") or 0) == version
    state = await store.read("s", th, NOW)
    assert state["current_analysis"]["run_id"] == "later39"
    remembered = (await redis_client.hget(keys.session("s"), "run_recent") or b"").split()
    assert remembered == [f"later{i}".encode() for i in range(8, 40)]  # bounded, newest kept


async def test_results_are_capped_newest_kept(redis_boundary: RedisClient) -> None:
    store = SessionStore(redis_boundary, ttl_s=3600, results_cap=3)
    th = await _session(store)
    for i in range(5):
        snap = await store.start_analysis("s", th, ["AAPL", "MSFT"][i % 2], f"r{i}", NOW)
        body = json.dumps({"id": f"r{i}:m", "run_id": f"r{i}"})
        assert (
            await store.append_result("s", f"r{i}", snap.basis_version, f"r{i}:m", body, 5) == "ok"
        )
    state = await store.read("s", th, NOW)
    assert [r["id"] for r in state["analysis_results"]] == ["r2:m", "r3:m", "r4:m"]


async def test_one_valuation_leader_and_a_deposed_leader_is_fenced(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    from marketpulse.market.providers import SimulatedSource
    from marketpulse.market.view import Market

    market = Market(SimulatedSource(seed=1))
    store = SessionStore(redis_boundary, ttl_s=3600)
    a = ValuationLoop(store, market, interval_s=1)
    b = ValuationLoop(store, market, interval_s=1)
    assert await a.lease.acquire() is True
    assert await b.lease.acquire() is False
    assert await a.lease.acquire() is True  # renewal
    await _session(store)
    new = await b.sweep(10)  # the new leader's tick
    old = await a.sweep(9)  # a deposed leader still sweeping an older tick
    assert new.updated == 1 and old.updated == 0 and old.unchanged == 1
    assert await redis_client.hget(keys.session("s"), "tick") == b"10"


async def test_concurrent_mutations_lose_no_update(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    """Touches, holdings changes and revaluations raced on one session: every committed change
    is counted in version, every holdings change in hv, and basis_version counts exactly the
    holdings changes plus the revaluations that reported a bump."""
    store = SessionStore(redis_boundary, ttl_s=3600)
    th = await _session(store)
    loop_prices = [{"AAPL": 10.0 + i, "GOOGL": 20.0 + i, "MSFT": 30.0 + i} for i in range(60)]
    n = 60

    async def revalue(i: int) -> object:
        val = value(HOLDINGS, loop_prices[i], i + 1)
        revaluation = Revaluation("s", b"1", float(val.total_text), val.prices_text)
        (outcome,), _ = await store.revalue_many(i + 1, NOW, [revaluation], [])
        return outcome

    async def holdings(i: int) -> int:
        h = {"AAPL": 100 + i, "GOOGL": 50, "MSFT": 75}
        basis = await store.set_holdings("s", th, h, value(h, loop_prices[0], 0), NOW)
        assert basis is not None  # no expected holdings or base: it never waits on them
        return basis

    async def touch(_: int) -> int:
        return await store.touch("s", th, NOW)

    ops = [f(i) for i in range(n) for f in (revalue, holdings, touch)]
    results = await asyncio.gather(*ops)
    reval_bumps = sum(1 for r in results[0::3] if r == "updated")
    raw = await redis_client.hgetall(keys.session("s"))
    assert int(raw[b"hv"]) == 1 + n
    assert int(raw[b"basis_version"]) == 1 + n + reval_bumps
    assert int(raw[b"version"]) == 1 + n + n + reval_bumps


@pytest.mark.parametrize("token", ["wrong", ""])
async def test_scripts_refuse_a_wrong_token_like_a_missing_session(
    redis_boundary: RedisClient, token: str
) -> None:
    from marketpulse.errors import SessionNotFound

    store = SessionStore(redis_boundary, ttl_s=3600)
    await _session(store)
    with pytest.raises(SessionNotFound):
        await store.start_analysis("s", hash_token(token), "AAPL", "r", NOW)
    with pytest.raises(SessionNotFound):
        await store.start_analysis("missing", hash_token("tok"), "AAPL", "r", NOW)


async def test_the_sweep_forgets_a_deleted_session(redis_boundary: RedisClient) -> None:
    """DELETE unindexes the session, so no sweep finds it gone: the next sweep must still drop
    its cached holdings (otherwise every deleted session leaks a few hundred bytes)."""
    from marketpulse.market.providers import SimulatedSource
    from marketpulse.market.view import Market

    store = SessionStore(redis_boundary, ttl_s=3600)
    tokens = {sid: await _session(store, sid) for sid in ("a", "b", "c")}
    loop = ValuationLoop(store, Market(SimulatedSource(seed=1)), interval_s=1)
    await loop.run_once()
    assert loop.cached_sessions == 3
    await store.delete("a", tokens["a"])
    await store.delete("b", tokens["b"])
    report = await loop.run_once()
    assert report.updated == 1 and report.gone == 0
    assert loop.cached_sessions == 1
