"""Results of a run that are due together are appended in one script run, each exactly as if it
were its own append run just after the previous one: the same statuses, the same stored state
(including the cap on kept results) and the same events with the same versions. Checked on
random scenarios against one-at-a-time appends on a twin session."""

from __future__ import annotations

import asyncio
import json
import random

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.sessions.portfolio import value
from marketpulse.sessions.store import SessionStore, hash_token

HOLDINGS = {"AAPL": 100.0, "GOOGL": 50.0, "MSFT": 75.0}
PRICES = {"AAPL": 1.0, "GOOGL": 2.0, "MSFT": 3.0}
NOW = "2026-01-02T00:00:00.000Z"
METRICS = ("m1", "m2", "m3", "m4", "m5")
DEADLINE = 20.0


def _body(run: str, rid: str) -> str:
    return json.dumps({"id": rid, "run_id": run, "value": 0.5, "timestamp": NOW})


async def _scenario(store: SessionStore, rng: random.Random) -> tuple[list[str], list[str]]:
    """The same random run of starts, holdings changes and result batches on sessions "a"
    (batched) and "b" (one at a time); the statuses of each."""
    th = hash_token("tok")
    for sid in ("a", "b"):
        await store.create(sid, th, HOLDINGS, value(HOLDINGS, PRICES, 0), NOW)
    got: dict[str, list[str]] = {"a": [], "b": []}
    runs: list[tuple[str, int]] = []
    for step in range(rng.randint(3, 12)):
        roll = rng.random()
        if roll < 0.25 or not runs:
            run = f"run{step}"
            ticker = rng.choice(["AAPL", "MSFT"])
            pinned = [(await store.start_analysis(s, th, ticker, run, NOW)).basis_version
                      for s in ("a", "b")]  # fmt: skip
            assert pinned[0] == pinned[1]
            runs.append((run, pinned[0]))
            continue
        if roll < 0.35:  # the basis moves: later appends of the run are stale
            for sid in ("a", "b"):
                await store.set_holdings(sid, th, HOLDINGS, value(HOLDINGS, PRICES, 0), NOW)
            continue
        # mostly the current run, sometimes an older one (superseded) or a wrong basis (stale)
        run, basis = runs[-1] if rng.random() < 0.8 else rng.choice(runs)
        if rng.random() < 0.1:
            basis += 1
        ids = [f"{run}:{m}" for m in rng.sample(METRICS, rng.randint(1, 5))]
        if rng.random() < 0.3:
            ids.append(ids[0])  # a duplicate inside the batch
        results = [(rid, _body(run, rid)) for rid in ids]
        got["a"] += await store.append_results("a", run, basis, results, len(METRICS))
        for one in results:
            got["b"] += await store.append_results("b", run, basis, [one], len(METRICS))
    return got["a"], got["b"]


async def _events(redis_client: Redis, sid: str, pubsub: PubSub) -> list[str]:
    """Every event published on the session's channel so far, in order (up to a sentinel)."""
    channel = keys.session_events(sid)
    await redis_client.spublish(channel, "end")
    out: list[str] = []
    while True:
        msg = await pubsub.get_message(timeout=DEADLINE)
        if msg is None:
            raise AssertionError("no sentinel")
        if msg["type"] != "smessage" or msg["channel"].decode() != channel:
            continue
        data = msg["data"].decode()
        if data == "end":
            return out
        out.append(data)


async def test_a_batch_appends_exactly_as_one_at_a_time_appends(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    statuses_seen: set[str] = set()
    async with asyncio.timeout(DEADLINE * 3):
        for seed in range(40):
            await redis_client.flushdb()
            rng = random.Random(seed)
            store = SessionStore(redis_boundary, ttl_s=3600, results_cap=rng.randint(2, 8))
            async with redis_client.pubsub() as ps_a, redis_client.pubsub() as ps_b:
                await ps_a.ssubscribe(keys.session_events("a"))
                await ps_b.ssubscribe(keys.session_events("b"))
                batched, single = await _scenario(store, rng)
                assert batched == single, f"seed {seed}"
                statuses_seen.update(batched)
                assert await _events(redis_client, "a", ps_a) == await _events(
                    redis_client, "b", ps_b
                ), f"seed {seed}"
            a = await redis_client.hgetall(keys.session("a"))
            b = await redis_client.hgetall(keys.session("b"))
            for field in (b"session_id", b"run_entry"):  # the id, and where each was queued
                a.pop(field)
                b.pop(field)
            assert a == b, f"seed {seed}"
    # the scenarios went through every outcome
    assert statuses_seen == {"ok", "complete", "dup", "superseded", "stale"}
