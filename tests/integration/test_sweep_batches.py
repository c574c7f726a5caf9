"""The sweep's batches (session_revalue_many.lua): many sessions of one partition revalued in one
script call, each exactly as session_revalue.lua revalues one (the same Lua function), each with
its own outcome; the sweep walking every node's partitions (on one server and on the cluster,
``any_redis_url``); and the pacing of the sweep's calls on the bulk connection."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.endpoint import pack
from marketpulse.infra.redis.mux import BULK_WINDOW
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.view import Market
from marketpulse.sessions.portfolio import value
from marketpulse.sessions.store import SCRIPTS, HoldingsAt, SessionStore, hash_token
from marketpulse.sessions.valuation import ValuationLoop
from support.tcp_proxy import TcpProxy

DEADLINE = 30.0
HOLDINGS = {"AAPL": 10.0, "MSFT": 5.0}
PRICES = {"AAPL": 100.0, "MSFT": 200.0}
NOW = "2026-01-02T00:00:00.000Z"
REVALUE = SCRIPTS.load("session_revalue")  # one session, as the batch's function runs it
FIELDS = ("version", "basis_version", "tick", "total_value", "prices", "valued_at", "fx", "flags")


@pytest.fixture
async def boundary(any_redis_url: str) -> AsyncIterator[RedisClient]:
    client = RedisClient.from_url(any_redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def same_partition(n: int, partition: int = 3) -> list[str]:
    """``n`` session ids of one partition (one slot: one batch)."""
    ids = (f"b{i}" for i in itertools.count())
    return list(itertools.islice((s for s in ids if partitions.partition_of(s) == partition), n))


async def _create(store: SessionStore, sid: str) -> None:
    await store.create(sid, hash_token("t"), HOLDINGS, value(HOLDINGS, PRICES, 0), NOW)


async def _fields(redis: RedisClient, sid: str) -> list[Any]:
    return list(await redis.call("HMGET", keys.session(sid), *FIELDS))


async def _hv(redis: RedisClient, sid: str) -> bytes:
    hv: bytes = await redis.call("HGET", keys.session(sid), "hv")
    return hv


async def test_a_batch_revalues_each_session_as_the_single_script_does(
    boundary: RedisClient,
) -> None:
    """Twin sessions: one revalued by session_revalue.lua alone, the other in a batch with
    others, through a moved price, an unchanged one, a flags-only step (no total) and a
    stale tick: the same fields after every step."""
    store = SessionStore(boundary, ttl_s=3600)
    alone, *batched = same_partition(5)
    twin = batched[0]
    steps: list[tuple[int, float | None, str, str]] = [
        (1, 2100.0, '{"AAPL":110.0,"MSFT":200.0}', "[]"),  # a moved price: a new basis
        (2, 2100.0, '{"AAPL":110.0,"MSFT":200.0}', "[]"),  # the same: only the tick moves
        (3, None, '{"AAPL":110.0,"MSFT":200.0}', '["fx_unavailable"]'),  # flags only
        (2, 9999.0, '{"AAPL":1.0,"MSFT":1.0}', "[]"),  # an older tick: refused
    ]
    async with asyncio.timeout(DEADLINE):
        for sid in (alone, *batched):
            await _create(store, sid)
        hv = await _hv(boundary, alone)
        for tick, total, prices, flags in steps:
            at = f"2026-01-02T00:00:0{tick}.000Z"
            args: list[str | bytes | int] = [tick, hv, "" if total is None else repr(total)]
            args += [prices, at, '{"USD":1.0}']
            await boundary.mux.evalsha(
                REVALUE.sha, REVALUE.source, SessionStore.keys_for(alone), [*args, flags]
            )
            basis = (prices, '{"USD":1.0}', flags)
            items = [(sid, hv, total, basis) for sid in batched]
            outcomes, _ = await store.revalue(tick, at, items, [])
            assert len(set(outcomes)) == 1  # every session of the batch alike
            assert await _fields(boundary, twin) == await _fields(boundary, alone)


async def test_each_session_of_a_batch_has_its_own_outcome(boundary: RedisClient) -> None:
    """One call over sessions that update, stay the same, are at a newer tick, are gone, have
    moved holdings, or are not a hash: each answers for itself, the others go on; a gone one
    is not recreated and no TTL moves."""
    store = SessionStore(boundary, ttl_s=3600)
    fresh, same, newer, gone, moved, broken, unread = same_partition(7)
    prices = '{"AAPL":120.0,"MSFT":200.0}'
    basis = (prices, '{"USD":1.0}', "[]")
    async with asyncio.timeout(DEADLINE):
        for sid in (fresh, same, newer, moved, unread):
            await _create(store, sid)
        hv = await _hv(boundary, fresh)
        (o,), _ = await store.revalue(5, NOW, [(same, hv, 2200.0, basis)], [])
        assert o == "updated"
        (o,), _ = await store.revalue(9, NOW, [(newer, hv, 2200.0, basis)], [])
        assert o == "updated"
        await boundary.call("HSET", keys.session(moved), "hv", "changed-elsewhere")
        await boundary.call("SET", keys.session(broken), "not a hash")
        ttl_before = await store.pttl_ms(fresh)
        items = [(sid, hv, 2200.0, basis) for sid in (fresh, same, newer, gone, moved, broken)]
        outcomes, found = await store.revalue(6, NOW, items, [unread])
        ttl_after = await store.pttl_ms(fresh)
    assert outcomes[:4] == ["updated", "unchanged", "unchanged", "gone"]
    assert isinstance(outcomes[4], HoldingsAt) and outcomes[4].version == b"changed-elsewhere"
    assert outcomes[4].holdings == HOLDINGS
    assert isinstance(outcomes[5], RedisUnavailable) and "WRONGTYPE" in outcomes[5].message
    assert isinstance(found[0], HoldingsAt) and found[0].holdings == HOLDINGS
    assert not await store.exists(gone)  # never recreated
    assert 0 < ttl_after <= ttl_before  # not refreshed
    assert (await _fields(boundary, newer))[2] == b"9"  # the newer tick stays


async def test_the_sweep_walks_every_node_and_revalues_every_session(
    boundary: RedisClient, request: pytest.FixtureRequest
) -> None:
    clustered = request.node.callspec.params["any_redis_url"] == "cluster"
    store = SessionStore(boundary, ttl_s=3600)
    sids = [f"w{i}" for i in range(120)]  # every partition, several times
    async with asyncio.timeout(DEADLINE):
        for sid in sids:
            await _create(store, sid)
        groups = await store.partitions_by_node()
        loop = ValuationLoop(store, Market(SimulatedSource(seed=1)), interval_s=1)
        report = await loop.sweep(1)
    assert sorted(p for g in groups for p in g) == list(partitions.ALL)
    assert len(groups) == (3 if clustered else 1)
    assert report.updated == len(sids) and report.gone == 0
    assert loop.cached_sessions == len(sids)


async def test_a_paced_bulk_pipeline_keeps_a_window_of_calls_in_flight(
    redis_proxy: TcpProxy,
) -> None:
    """Redis reads all that a connection has sent before it serves another client, so the
    sweep's calls (``paced``) go out ``BULK_WINDOW`` at a time: with every reply held by the
    proxy, only that many reach Redis, and an unpaced command sent meanwhile goes out after
    them on the same connection; once the replies flow, every call is answered in order."""
    client = RedisClient.from_url(redis_proxy.url())
    echo, marker = ("ECHO", "p" * 100), ("ECHO", "marker")
    try:
        async with asyncio.timeout(DEADLINE):
            await client.pipeline_packed([("PING",)])  # the bulk connection, logged in
            base = redis_proxy.stats.bytes_up
            redis_proxy.delay(DEADLINE)  # every reply held
            paced = asyncio.create_task(client.pipeline_packed([echo] * 10, paced=True))
            window = base + BULK_WINDOW * len(pack(echo))
            await redis_proxy.until(lambda: redis_proxy.stats.bytes_up >= window)
            unpaced = asyncio.create_task(client.pipeline_packed([marker]))
            sent = window + len(pack(marker))
            await redis_proxy.until(lambda: redis_proxy.stats.bytes_up >= sent)
            assert redis_proxy.stats.bytes_up == sent  # no fifth paced call went out
            redis_proxy.restore()
            assert await paced == [b"p" * 100] * 10
            assert await unpaced == [b"marker"]
    finally:
        await client.aclose()
