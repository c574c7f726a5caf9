"""The start-up migration from the single-stream layout to the partitions (sessions/migrate.py),
on a copy of that layout written the way the previous version wrote it: the session scripts
run on the old key names (``mp:{<id>}:session``, the run stream ``mp:{runs}:stream``; the
hash's fields are the same in both versions), the index ``mp:sessions`` with the creation
times, one run pending for a worker that was stopped, one queued, one session expired and one
found only through the stream. Migrated twice, by three instances at once, and with a dead
migrator's lease in the way: nothing is lost or duplicated, TTLs and index scores are kept, the
runs are queued again on their partitions and a worker finishes them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from marketpulse.config import MetricDelay
from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.scripts import Lua
from marketpulse.market.providers.simulated import SimulatedSource
from marketpulse.market.view import Market
from marketpulse.sessions import store as store_module
from marketpulse.sessions.analysis import AnalysisEngine
from marketpulse.sessions.metrics import METRIC_NAMES
from marketpulse.sessions.migrate import MigrationReport, migrate
from marketpulse.sessions.portfolio import canonical_holdings, value
from marketpulse.sessions.runs import RunQueue
from marketpulse.sessions.store import SessionStore, hash_token
from marketpulse.sessions.worker import RunWorker

HOLDINGS = {"AAPL": 10.0, "MSFT": 5.0}
NOW = "2026-01-02T00:00:00.000Z"
BORN_MS = int(datetime.fromisoformat(NOW).timestamp() * 1000)
TH = hash_token("tok")
TTL_S = 3600
IDLE = [f"idle-{i}" for i in range(40)]  # sessions with no run
QUEUED = "queued-1"  # its run queued, never read
PENDING = "pending-1"  # its run read by a worker of the old version, then stopped
STREAM_ONLY = "stream-only"  # a run in the old stream, the session missing from the old index
EXPIRED = "expired-1"  # indexed, its hash expired
DEADLINE = 20.0


async def _old(redis: RedisClient, lua: Lua, sid: str, args: list[Any]) -> Any:
    """A session script of today's store on the old layout's keys (standalone Redis runs a
    script across slots; the old version passed exactly these three keys)."""
    old_keys = [keys.old_session(sid), f"mp:{{{sid}}}:events", keys.OLD_RUN_STREAM]
    return await redis.mux.evalsha(lua.sha, lua.source, old_keys, args)


async def _old_layout(redis: RedisClient, raw: Redis) -> None:
    val = value(HOLDINGS, dict.fromkeys(HOLDINGS, 100.0), 0)
    for sid in [*IDLE, QUEUED, PENDING, STREAM_ONLY, EXPIRED]:
        if sid != STREAM_ONLY:
            await raw.zadd(keys.OLD_SESSION_INDEX, {sid: BORN_MS}, nx=True)
        args: list[Any] = [sid, TH, canonical_holdings(HOLDINGS), val.total_text]
        args += [val.prices_text, NOW, val.tick, TTL_S, val.base_currency, val.currencies_text]
        args += [val.fx_text, val.flags_text]
        assert await _old(redis, store_module._SESSION_CREATE, sid, args) == b"ok"
    await raw.xgroup_create(keys.OLD_RUN_STREAM, keys.RUN_GROUP, "0", mkstream=True)
    for sid in (PENDING, QUEUED, STREAM_ONLY):
        args = [TH, "AAPL", f"{sid}-run", NOW, TTL_S, keys.RUN_GROUP, 10_000, 100_000, sid]
        reply = await _old(redis, store_module._ANALYSIS_START, sid, args)
        assert reply[0] == b"started"
        if sid == PENDING:  # taken by a worker of the old version, which then stopped
            got: Any = await raw.xreadgroup(
                keys.RUN_GROUP, "old-worker", {keys.OLD_RUN_STREAM: ">"}, count=1
            )
            assert got[0][1][0][1][b"s"] == PENDING.encode()
    await raw.delete(keys.old_session(EXPIRED))  # as if it expired


@pytest.fixture
async def boundaries(redis_url: str) -> AsyncIterator[list[RedisClient]]:
    """Three instances' Redis boundaries."""
    clients = [RedisClient.from_url(redis_url) for _ in range(3)]
    try:
        yield clients
    finally:
        for c in clients:
            await c.aclose()


async def _hashes(raw: Redis, names: dict[str, str]) -> dict[str, dict[bytes, bytes]]:
    out = {}
    for sid, key in names.items():
        got: Any = await raw.hgetall(key)
        out[sid] = got
    return out


async def test_migration_moves_everything_once_with_concurrent_instances(
    boundaries: list[RedisClient], redis_client: Redis
) -> None:
    first = boundaries[0]
    await _old_layout(first, redis_client)
    live = [*IDLE, QUEUED, PENDING, STREAM_ONLY]
    before = await _hashes(redis_client, {s: keys.old_session(s) for s in live})
    pttl_before = {s: await redis_client.pttl(keys.old_session(s)) for s in live}

    reports = await asyncio.gather(*(migrate(b) for b in boundaries))
    done = [r for r in reports if r is not None]
    assert len(done) == 1  # one instance migrated, the others waited for its marker
    assert done[0] == MigrationReport(moved=len(live), requeued=3, existed=0, gone=1)
    assert await migrate(first) is None  # once: a second start finds the marker
    assert await redis_client.get(keys.LAYOUT) == keys.LAYOUT_VERSION.encode()

    # the old layout is gone
    for sid in [*live, EXPIRED]:
        assert not await redis_client.exists(keys.old_session(sid))
    assert not await redis_client.exists(keys.OLD_SESSION_INDEX, keys.OLD_RUN_STREAM)

    # each session in its partition: every field kept (the run's entry is its new one), the
    # TTL kept (not refreshed), the index score kept (now for the one found through the stream)
    after = await _hashes(redis_client, {s: keys.session(s) for s in live})
    for sid in live:
        old, new = dict(before[sid]), dict(after[sid])
        old.pop(b"run_entry", None)
        new.pop(b"run_entry", None)
        assert new == old, sid
        assert 0 < await redis_client.pttl(keys.session(sid)) <= pttl_before[sid]
        score = await redis_client.zscore(keys.session_index(partitions.partition_of(sid)), sid)
        assert score is not None
        if sid != STREAM_ONLY:
            assert score == BORN_MS
    indexed = 0
    for p in partitions.ALL:
        indexed += await redis_client.zcard(keys.session_index(p))
    assert indexed == len(live)  # the expired one is not indexed again

    # the three runs queued again on their partitions, once each, and finished by a worker
    store = SessionStore(first, ttl_s=TTL_S)
    queued: list[str] = []
    for p in partitions.ALL:
        entries: Any = await redis_client.xrange(keys.run_stream(p))
        queued += [e[1][b"s"].decode() for e in entries]
        for entry_id, fields in entries:
            sid = fields[b"s"].decode()
            assert partitions.partition_of(sid) == p
            assert await redis_client.hget(keys.session(sid), "run_entry") == entry_id
    assert sorted(queued) == sorted([PENDING, QUEUED, STREAM_ONLY])
    engine = AnalysisEngine(store, Market(source=SimulatedSource(seed=1)), delay=MetricDelay(0, 0))
    queue = RunQueue(first)
    await queue.ensure_group()
    worker = RunWorker(engine, queue, reclaim_s=5.0, consumer="new-worker")
    assert await worker.run_once() == 3
    for sid in (PENDING, QUEUED, STREAM_ONLY):
        if (task := engine.runs.get(sid)) is not None:
            await asyncio.wait_for(task, DEADLINE)
        state = await store.read(sid, TH, NOW)
        assert state["current_analysis"]["status"] == "complete"
        assert sorted(r["metric"] for r in state["analysis_results"]) == sorted(METRIC_NAMES)
    await engine.shutdown()


async def test_a_migration_resumes_after_one_that_died_half_way(
    boundaries: list[RedisClient], redis_client: Redis
) -> None:
    """A migrator that died holding the lease, after moving some sessions: the next instance
    waits for the lease to lapse, takes it over and finishes; the sessions already moved are
    left as they are (one changed since keeps its change)."""
    first = boundaries[0]
    await _old_layout(first, redis_client)
    script = first.script(store_module.SCRIPTS, "session_migrate")
    moved = IDLE[0]
    fields: Any = await redis_client.hgetall(keys.old_session(moved))
    p = partitions.partition_of(moved)
    args: list[Any] = [moved, 60_000, BORN_MS, 100_000]
    for k, v in fields.items():
        args += (k, v)
    new_keys = [keys.session(moved), keys.session_events(moved), keys.run_stream(p)]
    assert await script([*new_keys, keys.session_index(p)], args) == b"moved"
    await redis_client.hset(keys.session(moved), "holdings", json.dumps({"AAPL": 1.0}))
    await redis_client.set(keys.MIGRATE_LEASE, "a-dead-instance", px=300)

    report = await migrate(boundaries[1])
    assert report is not None
    assert (report.moved, report.existed, report.gone) == (len(IDLE) + 2, 1, 1)
    assert await redis_client.hget(keys.session(moved), "holdings") == b'{"AAPL": 1.0}'
    assert not await redis_client.exists(keys.old_session(moved))
    for sid in IDLE[1:]:
        assert await redis_client.hget(keys.session(sid), "token") == TH.encode()


async def test_a_fresh_database_is_marked_at_once(
    boundaries: list[RedisClient], redis_client: Redis
) -> None:
    assert await migrate(boundaries[0]) == MigrationReport()
    assert await redis_client.get(keys.LAYOUT) == keys.LAYOUT_VERSION.encode()
    assert await migrate(boundaries[1]) is None
