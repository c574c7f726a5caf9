"""Revaluation sweep of N sessions (default 100,000) on a private redis-server: the real
ValuationLoop.sweep (one pipelined EVALSHA per session, holdings cached by version), cold (first
sweep reads every session's holdings) and warm, against a baseline in the same run: the same
keys through the same transport with a script that does nothing (so the ratio is the cost of the
real revaluation over bare script calls). Also the bytes per session in Redis.

    uv run --frozen python bench/bench_revaluation.py [N]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.view import Market
from marketpulse.sessions.portfolio import canonical_holdings, value
from marketpulse.sessions.store import SCRIPTS, SessionStore, hash_token
from marketpulse.sessions.valuation import CHUNK, ValuationLoop

UNIVERSE = ["AAPL", "MSFT", "GOOGL", "IBM", "AMZN", "NVDA", "TSLA", "META", "JPM", "XOM"]
NOW = "2026-01-02T00:00:00.000Z"


async def main(n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d, EmbeddedRedis(Path(d), durable=False).running() as rs:
        client = RedisClient.from_url(rs.url)
        redis = client.redis  # the bulk load and the memory figures go around the store
        market = Market(SimulatedSource(seed=42))
        prices0 = await market.prices(UNIVERSE, 0)
        th = hash_token("t")
        used0 = (await redis.info("memory"))["used_memory"]
        create = SCRIPTS.register(redis, "session_create")  # bulk load through the real script
        for start in range(0, n, CHUNK):
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(start, min(n, start + CHUNK)):
                    h = {UNIVERSE[(i + k) % len(UNIVERSE)]: float(10 + k) for k in range(3)}
                    val = value(h, prices0, 0)
                    sid = f"user-{i}"
                    pipe.zadd(keys.session_index(keys.session_partition(sid)), {sid: 0})
                    args: list[str | int] = [sid, th, canonical_holdings(h), val.total_text]
                    args.append(val.prices_text)
                    args += [NOW, 0, 86400, val.base_currency, val.currencies_text]
                    args += [val.fx_text, val.flags_text]
                    await create(keys=SessionStore.keys_for(sid), client=pipe, args=args)
                await pipe.execute()
        used1 = (await redis.info("memory"))["used_memory"]
        loop = ValuationLoop(SessionStore(client, ttl_s=86400), market, interval_s=30)
        t0 = time.perf_counter()
        cold = await loop.sweep(1)
        t1 = time.perf_counter()
        warm = await loop.sweep(2)
        t2 = time.perf_counter()
        # baseline: the same keys and transport (hiredis-packed pipeline), a script doing nothing
        sha = await redis.script_load("return 1")
        t3 = time.perf_counter()
        for start in range(0, n, CHUNK):
            await client.pipeline_packed([
                ("EVALSHA", sha, 2, keys.session(f"user-{i}"), keys.session_events(f"user-{i}"),
                 2, 1, "123.45", '{"AAPL":1.0}', NOW, '{"USD":1.0}', "[]")
                for i in range(start, min(n, start + CHUNK))
            ])  # fmt: skip
        t4 = time.perf_counter()
        sample = await redis.memory_usage(keys.session("user-1"))
        await client.aclose()
        assert warm.updated == n, warm
        return {
            "bench": "revaluation",
            "sessions": n,
            "cold_sweep_s": round(t1 - t0, 3),
            "warm_sweep_s": round(t2 - t1, 3),
            "baseline_trivial_evalsha_s": round(t4 - t3, 3),
            "warm_ratio_to_baseline": round((t2 - t1) / (t4 - t3), 3),
            "sessions_per_s_warm": round(n / (t2 - t1)),
            "redis_bytes_per_session": round((used1 - used0) / n),
            "memory_usage_one_session_bytes": sample,
            "cold_report": {"updated": cold.updated, "unchanged": cold.unchanged},
        }


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    json.dump(asyncio.run(main(count)), sys.stdout)
    print()
