"""Atomic session-state operations per second vs a bare EVALSHA of a trivial script, at the same
concurrency, on a private redis-server: spread over many sessions, and all on one hot session.

Prints one JSON object; ``ratio`` = ops/s of our operation / ops/s of the trivial script.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from marketpulse.adapters.embedded_redis import EmbeddedRedis
from marketpulse.adapters.redis_client import make_client
from marketpulse.adapters.redis_mux import RedisMux
from marketpulse.adapters.session_store import SessionStore, hash_token
from marketpulse.domain.portfolio import value

CONCURRENCY = 32
SECONDS = 2.0
HOLD = {"AAPL": 100.0, "GOOGL": 50.0, "MSFT": 75.0}
NOW = "2026-01-02T00:00:00.000Z"


async def rate(op: Callable[[int, int], Awaitable[object]]) -> float:
    done = 0
    stop = time.perf_counter() + SECONDS

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            await op(w, i)
            i += 1
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    return done / (time.perf_counter() - t0)


async def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d, EmbeddedRedis(Path(d), durable=False).running() as rs:
        redis = make_client(rs.url, max_connections=CONCURRENCY + 8)
        store = SessionStore(redis, RedisMux.for_client(redis), ttl_s=3600)
        th = hash_token("t")
        val = value(HOLD, {"AAPL": 1.0, "GOOGL": 2.0, "MSFT": 3.0}, 0)
        for w in range(CONCURRENCY):
            await store.create(f"s{w}", th, HOLD, val, NOW)
            await store.start_analysis(f"s{w}", th, "AAPL", f"run{w}", NOW)
        await store.create("hot", th, HOLD, val, NOW)
        await store.start_analysis("hot", th, "AAPL", "hotrun", NOW)
        trivial = redis.register_script("return 1")
        body = json.dumps({"ticker": "AAPL", "metric": "concentration", "value": 0.123456789,
                           "timestamp": NOW, "run_id": "x" * 32, "basis_version": 1,
                           "details": {"overweight": False, "weight": 0.333}})  # fmt: skip

        async def bare(w: int, i: int) -> object:
            return await trivial(keys=[f"k{w}"], args=[i])

        async def cycle(sid: str, w: int, i: int) -> object:
            # the real mix of a run: one start, then five checked appends
            run = f"{w}-{i // 6}"
            if i % 6 == 0:
                return await store.start_analysis(sid, th, ["AAPL", "MSFT"][i // 6 % 2], run, NOW)
            return await store.append_result(sid, run, 1, f"{run}:{i % 6}", body, 5)

        async def append(w: int, i: int) -> object:
            return await cycle(f"s{w}", w, i)

        async def append_hot(w: int, i: int) -> object:
            return await cycle("hot", w, i)

        async def touch(w: int, i: int) -> object:
            return await store.touch(f"s{w}", th, NOW)

        out: dict[str, object] = {"bench": "state_ops", "concurrency": CONCURRENCY}
        base = await rate(bare)
        out["bare_evalsha_ops_s"] = round(base)
        for name, op in (
            ("run_ops", append),
            ("run_ops_one_hot_session", append_hot),
            ("touch", touch),
        ):
            r = await rate(op)
            out[f"{name}_ops_s"] = round(r)
            out[f"{name}_ratio"] = round(r / base, 3)
        stats = await redis.info("commandstats")
        evalsha = stats.get("cmdstat_evalsha", {})
        out["redis_usec_per_evalsha"] = evalsha.get("usec_per_call")
        await redis.aclose()
        return out


if __name__ == "__main__":
    result = asyncio.run(main())
    json.dump(result, sys.stdout)
    print()
