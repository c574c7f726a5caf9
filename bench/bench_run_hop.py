"""The stream hop of an analysis run: from the start script queuing it (XADD) to a worker
holding it (XREADGROUP, the resume script, the engine's task), with N runs started at once,
in one process against a private redis-server. Prints the hop's p50/p99 (ms: this process's
clock from the start call to the engine's take, and Redis's clock from the enqueue to the
resume read) and this process's CPU per start (the start scripts alone, the baseline) and per
take (the worker's read, resume and take, plus computing the run's five results, which the
engine does as soon as the burst of takes is quiet; nothing is appended: the delay is an hour).

    uv run --frozen python bench/bench_run_hop.py [--hop-only] [N] [ROUNDS]

``--hop-only`` gives the engine an idle run coroutine, so the CPU per take is the hop alone.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from marketpulse.config import MetricDelay
from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.market.providers.simulated import SimulatedSource
from marketpulse.market.view import Market
from marketpulse.sessions.analysis import AnalysisEngine
from marketpulse.sessions.portfolio import value
from marketpulse.sessions.runs import RunQueue
from marketpulse.sessions.store import SessionStore, hash_token
from marketpulse.sessions.worker import RunWorker

HOLDINGS = {"AAPL": 100.0, "GOOGL": 50.0, "MSFT": 75.0, "IBM": 20.0}
NOW = "2026-01-02T00:00:00.000Z"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


async def _idle_run(*_: Any) -> None:
    await asyncio.sleep(3600)  # a run that does nothing until the round stops it


async def one_round(url: str, n: int, r: int, hop_only: bool) -> dict[str, Any]:
    redis = RedisClient.from_url(url)
    store = SessionStore(redis, ttl_s=3600)
    engine = AnalysisEngine(
        store, Market(source=SimulatedSource(seed=1)), delay=MetricDelay(3600, 3600)
    )
    if hop_only:
        engine._run = _idle_run  # type: ignore[method-assign,assignment]
    worker = RunWorker(engine, RunQueue(redis), reclaim_s=10)
    th = hash_token("t")
    sids = [f"r{r}-{i}" for i in range(n)]
    for sid in sids:
        await store.create(sid, th, HOLDINGS, value(HOLDINGS, {t: 1.0 for t in HOLDINGS}, 0), NOW)
    stop = asyncio.Event()
    running = asyncio.ensure_future(worker.run(stop))
    await asyncio.sleep(0.2)  # wait-ok: the worker's first (empty) read is blocked by now
    started: dict[str, float] = {}
    taken: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()

    async def start(sid: str) -> None:
        started[sid] = loop.time()
        await store.start_analysis(sid, th, "AAPL", f"{sid}-run", NOW)

    await asyncio.gather(*(start(s) for s in sids))
    cpu_starts = time.process_time() - cpu0
    async with asyncio.timeout(30):
        while True:
            now = loop.time()
            for sid in engine.runs:
                if sid in started:
                    taken.setdefault(sid, now)
            if len(taken) == n:
                break
            await engine.took.wait()
    cpu_all = time.process_time() - cpu0
    stop.set()
    await running
    await engine.shutdown()
    streams = [keys.run_stream(p) for p in partitions.ALL]
    await redis.call("DEL", *streams)  # the runs handed back: not the next round's
    await redis.aclose()
    hops = [(taken[s] - started[s]) * 1000 for s in sids]
    return {
        "runs": n,
        "hop_ms_p50": round(pct(hops, 0.5), 2),
        "redis_clock_enqueue_to_resume_ms_p50": pct(list(worker.hops_ms), 0.5),
        "redis_clock_enqueue_to_resume_ms_p99": pct(list(worker.hops_ms), 0.99),
        "hop_ms_p99": round(pct(hops, 0.99), 2),
        "cpu_us_per_start": round(cpu_starts * 1e6 / n, 1),
        "cpu_us_per_take": round((cpu_all - cpu_starts) * 1e6 / n, 1),
    }


async def main(n: int, rounds: int, hop_only: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d, EmbeddedRedis(Path(d), durable=False).running() as rs:
        return {
            "bench": "run_hop",
            "hop_only": hop_only,
            "rounds": [await one_round(rs.url, n, r, hop_only) for r in range(rounds)],
        }


if __name__ == "__main__":
    hop_only = "--hop-only" in sys.argv
    args = [int(a) for a in sys.argv[1:] if a != "--hop-only"]
    n = args[0] if args else 100
    rounds = args[1] if len(args) > 1 else 3
    print(json.dumps(uvloop.run(main(n, rounds, hop_only))))
