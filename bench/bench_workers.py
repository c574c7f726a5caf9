"""Runs per second through ``marketpulse worker`` processes against the in-process worker, in
one run, on one private redis-server.

Each layout drains the same backlog: R sessions get one run each, queued by the start script
(the same call a WebSocket ``analyze`` makes) while no worker runs, with the metric delay set to
0, so a run costs what computing and appending its five results costs. Then the workers start
and the clock runs until every run's ``analysis_complete`` has been published. The
baseline is one worker inside the bench's process (the worker ``marketpulse serve`` runs,
same engine and settings); each other layout is N ``marketpulse worker`` processes. Every
layout's runs are checked afterwards: each session's run is complete with its five results.

    uv run --frozen python bench/bench_workers.py [RUNS] [N ...]     (defaults: 2000, 1 2 4)

On a machine with C cores, more than C workers cannot add throughput: Redis and the workers
share the cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from marketpulse.app import run_worker
from marketpulse.config import Settings
from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.client import RedisClient, make_client
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.sessions.portfolio import value
from marketpulse.sessions.runs import RunQueue
from marketpulse.sessions.store import SessionStore, hash_token

HOLDINGS = {"AAPL": 100.0, "GOOGL": 50.0, "MSFT": 75.0, "IBM": 20.0}
NOW = "2026-01-02T00:00:00.000Z"
TOKEN = hash_token("bench")
ENV = {
    "MARKETPULSE_METRIC_DELAY": "0",
    "MARKETPULSE_DATA_SOURCE": "simulated",
    "MARKETPULSE_SEED": "7",
    "MARKETPULSE_LOG_LEVEL": "WARNING",
}


async def fresh_stream(redis: RedisClient) -> None:
    """An empty run stream and group with no consumers (the last layout's are gone)."""
    await redis.call("DEL", *(keys.run_stream(p) for p in partitions.ALL))
    await RunQueue(redis).ensure_group()


def session_ids(layout: str, runs: int) -> list[str]:
    return [f"{layout.rstrip('-')}-{i}" for i in range(runs)]


async def queue_backlog(redis: RedisClient, layout: str, runs: int) -> list[str]:
    """R fresh sessions, each with one run queued on the stream; no worker has read any."""
    store = SessionStore(redis, ttl_s=3600)
    val = value(HOLDINGS, dict.fromkeys(HOLDINGS, 1.0), 0)
    sids = session_ids(layout, runs)
    gate = asyncio.Semaphore(64)

    async def one(sid: str) -> None:
        async with gate:
            await store.create(sid, TOKEN, HOLDINGS, val, NOW)
            await store.start_analysis(sid, TOKEN, "AAPL", f"{sid}-run", NOW)

    await asyncio.gather(*(one(s) for s in sids))
    return sids


class Completions:
    """Counts ``analysis_complete`` events on every session's channel (subscribed before the
    backlog is queued). A worker acknowledges ended runs in batches, at its next heartbeat, so
    the stream's pending count would time the heartbeat, not the runs."""

    def __init__(self, url: str, sids: list[str]) -> None:
        self._redis = make_client(url)
        self._pubsub = self._redis.pubsub()
        self.sids = sids
        self.done: set[str] = set()

    async def __aenter__(self) -> Completions:
        # sharded channels: no pattern subscription; one SSUBSCRIBE per session's channel
        for i in range(0, len(self.sids), 500):
            await self._pubsub.ssubscribe(*(keys.session_events(s) for s in self.sids[i : i + 500]))
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._redis.aclose()

    async def until(self, prefix: str, n: int, deadline_s: float) -> None:
        async with asyncio.timeout(deadline_s):
            while len(self.done) < n:
                msg = await self._pubsub.get_message(timeout=1.0)
                if msg is None or msg["type"] != "smessage":
                    continue
                if b'"type":"analysis_complete"' in msg["data"]:
                    sid = msg["channel"].decode().split(":events:", 1)[1]
                    if sid.startswith(prefix):
                        self.done.add(sid)


async def consumers(redis: RedisClient, n: int, deadline_s: float) -> None:
    """Until ``n`` workers are blocked reading the streams, one read per partition each (Redis
    7.0 lists a consumer only once it has read an entry, so the clients blocked in
    ``XREADGROUP`` are counted)."""
    async with asyncio.timeout(deadline_s):
        while True:
            clients = await redis.call("CLIENT LIST")
            blocked = sum(1 for c in clients if c.get("cmd") == "xreadgroup")
            if blocked >= n * partitions.COUNT:
                return
            await asyncio.sleep(0.05)  # wait-ok: a bench polling Redis's own count


async def check(redis: RedisClient, sids: list[str]) -> int:
    """Sessions whose run is not complete with its five results (0 expected)."""
    store = SessionStore(redis, ttl_s=3600)
    bad = 0
    for sid in sids:
        state = await store.read(sid, TOKEN, NOW)
        run = state.get("current_analysis") or {}
        if run.get("status") != "complete" or len(state["analysis_results"]) != 5:
            bad += 1
    return bad


async def in_process(url: str, runs: int) -> dict[str, Any]:
    redis = RedisClient.from_url(url)
    await fresh_stream(redis)
    os.environ.update(ENV | {"MARKETPULSE_REDIS_URL": url})
    stop = asyncio.Event()
    async with Completions(url, session_ids("inproc", runs)) as done:
        sids = await queue_backlog(redis, "inproc", runs)
        t0 = time.perf_counter()
        worker = asyncio.ensure_future(run_worker(Settings(), stop))
        await done.until("inproc-", runs, 300)
        elapsed = time.perf_counter() - t0
    stop.set()
    await worker
    bad = await check(redis, sids)
    await redis.aclose()
    return {"layout": "in-process", "workers": 1, "runs": runs, "seconds": round(elapsed, 3),
            "runs_per_s": round(runs / elapsed, 1), "incomplete": bad}  # fmt: skip


async def processes(url: str, runs: int, n: int) -> dict[str, Any]:
    redis = RedisClient.from_url(url)
    await fresh_stream(redis)
    env = os.environ | ENV | {"MARKETPULSE_REDIS_URL": url}
    cmd = [sys.executable, "-m", "marketpulse", "worker"]
    procs = [await asyncio.create_subprocess_exec(*cmd, env=env) for _ in range(n)]
    try:
        # started and reading (their imports are not timed), then paused while the backlog
        # is queued, so they start on it together, as the in-process worker does
        await consumers(redis, n, 60)
        for p in procs:
            p.send_signal(signal.SIGSTOP)
        async with Completions(url, session_ids(f"proc{n}-", runs)) as done:
            sids = await queue_backlog(redis, f"proc{n}-", runs)
            t0 = time.perf_counter()
            for p in procs:
                p.send_signal(signal.SIGCONT)
            await done.until(f"proc{n}-", runs, 300)
            elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            for p in procs:
                await p.wait()
    bad = await check(redis, sids)
    await redis.aclose()
    return {"layout": "worker processes", "workers": n, "runs": runs,
            "seconds": round(elapsed, 3), "runs_per_s": round(runs / elapsed, 1),
            "incomplete": bad}  # fmt: skip


async def main(runs: int, ns: list[int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d, EmbeddedRedis(Path(d), durable=False).running() as rs:
        base = await in_process(rs.url, runs)
        layouts = [await processes(rs.url, runs, n) for n in ns]
    for lay in layouts:
        lay["ratio_to_in_process"] = round(lay["runs_per_s"] / base["runs_per_s"], 2)
    return {"bench": "workers", "cores": os.cpu_count(), "baseline": base, "layouts": layouts}


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    runs = args[0] if args else 2000
    ns = args[1:] or [1, 2, 4]
    print(json.dumps(uvloop.run(main(runs, ns))))
