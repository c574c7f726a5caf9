"""Revaluation sweep of N sessions (default 100,000) on a private redis-server: the real
ValuationLoop.sweep (one ``session_revalue_many.lua`` call per 100 sessions of a partition,
pipelined; holdings cached by version), cold (the first sweep reads every session's holdings)
and warm, against two baselines measured in the same run:

- the bench's own: the same keys through the same transport (``pipeline_packed``), one script
  that does nothing per session (``EVALSHA "return 1"``), so the ratio is the cost of the real
  revaluation over bare script calls;
- Redis's own rate for that trivial script: ``redis-benchmark -P 100 -c 2 -n N EVALSHA <sha> 0``
  against the bench's server (its "requests completed in" time; null when redis-benchmark is
  not installed).

While the warm sweep runs, another process sends a ``GET`` every millisecond on its own
connection and reports its latency (p50, p99, max), with the same probe on the idle server as
its baseline. Then the same warm sweep on a Redis Cluster of 3 primaries and of 1 primary
(no replicas, no AOF, built as ``tests/support/cluster.py`` builds its nodes, slots assigned
with ``CLUSTER ADDSLOTSRANGE``), ``--cluster-sessions`` sessions each (default min(N, 200,000)):
sessions/s on 3 primaries over 1. Also the bytes per session in Redis.

    uv run --frozen python bench/bench_revaluation.py [N] [--cluster-sessions M]
    uv run --frozen python bench/bench_revaluation.py --get-probe HOST PORT   (the GET client)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.client import Command, RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis, free_port
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.view import Market
from marketpulse.sessions.portfolio import canonical_holdings, value
from marketpulse.sessions.store import SCRIPTS, SessionStore, hash_token
from marketpulse.sessions.valuation import ValuationLoop

UNIVERSE = ["AAPL", "MSFT", "GOOGL", "IBM", "AMZN", "NVDA", "TSLA", "META", "JPM", "XOM"]
NOW = "2026-01-02T00:00:00.000Z"
LOAD_CHUNK = 5000
CLUSTER_DEADLINE_S = 60.0
TRIVIAL = "return 1"


async def load(client: RedisClient, n: int, market: Market) -> None:
    """N sessions through the real create script (its raw arguments: the bulk path a store
    method cannot give), and each partition's sweep index, in packed pipelines."""
    prices0 = await market.prices(UNIVERSE, 0)
    th = hash_token("t")
    create = SCRIPTS.load("session_create")
    for start in range(0, n, LOAD_CHUNK):
        commands: list[Command] = [("SCRIPT", "LOAD", create.source)]
        index: dict[int, list[str]] = {}
        for i in range(start, min(n, start + LOAD_CHUNK)):
            h = {UNIVERSE[(i + k) % len(UNIVERSE)]: float(10 + k) for k in range(3)}
            val = value(h, prices0, 0)
            sid = f"user-{i}"
            index.setdefault(keys.session_partition(sid), []).append(sid)
            commands.append(
                ("EVALSHA", create.sha, 2, *SessionStore.keys_for(sid), sid, th,
                 canonical_holdings(h), val.total_text, val.prices_text, NOW, 0, 86400,
                 val.base_currency, val.currencies_text, val.fx_text, val.flags_text)
            )  # fmt: skip
        for partition, ids in index.items():
            members = [a for sid in ids for a in (0, sid)]
            commands.append(("ZADD", keys.session_index(partition), *members))
        for reply in await client.pipeline_packed(commands):
            if isinstance(reply, Exception):
                raise reply


async def trivial_baseline(client: RedisClient, n: int) -> float:
    """One trivial EVALSHA per session, the same keys and transport as the sweep: seconds."""
    (sha,) = [r for r in await client.pipeline_packed([("SCRIPT", "LOAD", TRIVIAL)])]
    started = time.perf_counter()
    for start in range(0, n, 2000):
        await client.pipeline_packed([
            ("EVALSHA", sha, 2, keys.session(f"user-{i}"), keys.session_events(f"user-{i}"),
             2, 1, "123.45", '{"AAPL":1.0}', NOW, '{"USD":1.0}', "[]")
            for i in range(start, min(n, start + 2000))
        ])  # fmt: skip
    return time.perf_counter() - started


def redis_benchmark(port: int, sha: str, n: int) -> dict[str, float] | None:
    """``redis-benchmark -P 100 -c 2 -n N EVALSHA <sha> 0``: its time (N over its throughput
    summary) and rate."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    out = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), "-P", "100", "-c", "2", "-n", str(n),
         "EVALSHA", sha, "0"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    # the rate is printed with more digits than the elapsed time (0.01 s for a small N)
    rate = re.search(r"throughput summary: ([\d.]+) requests per second", out)
    if rate is None or float(rate.group(1)) <= 0:
        raise RuntimeError(f"redis-benchmark's output not understood: {out[-400:]}")
    per_s = float(rate.group(1))
    return {"seconds": round(n / per_s, 3), "calls_per_s": round(per_s)}


# -- the other client: a GET every millisecond, in its own process ------------------------


def get_probe(host: str, port: int) -> None:
    """Until stdin has a line (or closes): ``GET`` on one connection, 1 ms apart; then one
    JSON line of its latencies. A raw socket and a fixed reply: nothing but the round trip."""
    request = b"*2\r\n$3\r\nGET\r\n$11\r\nprobe:value\r\n"
    with contextlib.suppress(PermissionError):  # see the module docstring
        os.nice(-10)
    lat: list[float] = []
    with socket.create_connection((host, port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print("ready", flush=True)
        while not select.select([sys.stdin], [], [], 0.001)[0]:
            t = time.perf_counter()
            s.sendall(request)
            got = b""
            while not got.endswith(b"\r\n"):
                got += s.recv(64)
            lat.append(time.perf_counter() - t)
    lat.sort()

    def pick(q: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 3)

    print(json.dumps({"gets": len(lat), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                      "max_ms": pick(1.0)}))  # fmt: skip


@contextlib.asynccontextmanager
async def probing(port: int) -> AsyncIterator[dict[str, Any]]:
    """The GET probe running for the block; its report in the dict after the block."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--get-probe", "127.0.0.1", str(port),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    report: dict[str, Any] = {}
    try:
        assert (await proc.stdout.readline()).strip() == b"ready"
        yield report
    finally:
        out, _ = await proc.communicate(b"stop\n")
        report.update(json.loads(out.decode().strip().splitlines()[-1]))


# -- a Redis Cluster of P primaries --------------------------------------------------------


@contextlib.contextmanager
def cluster(root: Path, primaries: int) -> Iterator[list[EmbeddedRedis]]:
    """P cluster-enabled redis-servers (the test cluster's options, no AOF, no replicas), the
    slots split evenly by ``CLUSTER ADDSLOTSRANGE``, joined by ``CLUSTER MEET``."""
    nodes: list[EmbeddedRedis] = []
    buses: list[int] = []
    try:
        for i in range(primaries):
            bus = free_port()
            extra = ("--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                     "--cluster-port", str(bus), "--repl-diskless-sync-delay", "0")  # fmt: skip
            node = EmbeddedRedis(root / f"p{primaries}-node-{i}", durable=False, extra_args=extra)
            node.start()
            nodes.append(node)
            buses.append(bus)
        for i, node in enumerate(nodes):
            lo, hi = i * 16384 // primaries, (i + 1) * 16384 // primaries - 1
            cli(node.port, "CLUSTER", "ADDSLOTSRANGE", str(lo), str(hi))
            if i:
                cli(node.port, "CLUSTER", "MEET", "127.0.0.1", str(nodes[0].port), str(buses[0]))
        deadline = time.monotonic() + CLUSTER_DEADLINE_S
        while not all(_serving(n.port, primaries) for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the bench's cluster did not come up")
            time.sleep(0.05)  # polling the nodes' own state under a deadline
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True
    ).stdout


def _serving(port: int, primaries: int) -> bool:
    info = cli(port, "CLUSTER", "INFO")
    return "cluster_state:ok" in info and f"cluster_known_nodes:{primaries}" in info


async def cluster_rate(root: Path, primaries: int, n: int) -> dict[str, Any]:
    with cluster(root, primaries) as nodes:
        client = RedisClient.from_url(nodes[0].url)
        try:
            market = Market(SimulatedSource(seed=42))
            await load(client, n, market)
            loop = ValuationLoop(SessionStore(client, ttl_s=86400), market, interval_s=30)
            await loop.sweep(1)
            t0 = time.perf_counter()
            warm = await loop.sweep(2)
            seconds = time.perf_counter() - t0
        finally:
            await client.aclose()
        assert warm.updated == n, warm
        return {"primaries": primaries, "sessions": n, "warm_sweep_s": round(seconds, 3),
                "sessions_per_s_warm": round(n / seconds)}  # fmt: skip


async def main(n: int, cluster_n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d, EmbeddedRedis(Path(d), durable=False).running() as rs:
        client = RedisClient.from_url(rs.url)
        redis = client.redis  # the memory figures go around the store
        market = Market(SimulatedSource(seed=42))
        used0 = (await redis.info("memory"))["used_memory"]
        await load(client, n, market)
        used1 = (await redis.info("memory"))["used_memory"]
        async with probing(rs.port) as idle:
            await asyncio.sleep(1.0)  # the probe's idle baseline: a second of GETs
        loop = ValuationLoop(SessionStore(client, ttl_s=86400), market, interval_s=30)
        t0 = time.perf_counter()
        cold = await loop.sweep(1)
        t1 = time.perf_counter()
        async with probing(rs.port) as during:
            t2 = time.perf_counter()
            warm = await loop.sweep(2)
            t3 = time.perf_counter()
        baseline = await trivial_baseline(client, n)
        sha = await redis.script_load(TRIVIAL)
        bench = redis_benchmark(rs.port, sha, n)
        sample = await redis.memory_usage(keys.session("user-1"))
        await client.aclose()
    assert warm.updated == n, warm
    cold_s, warm_s = t1 - t0, t3 - t2
    with tempfile.TemporaryDirectory() as d:
        three = await cluster_rate(Path(d), 3, cluster_n)
        one = await cluster_rate(Path(d), 1, cluster_n)
    return {
        "bench": "revaluation",
        "sessions": n,
        "cold_sweep_s": round(cold_s, 3),
        "warm_sweep_s": round(warm_s, 3),
        "baseline_trivial_evalsha_s": round(baseline, 3),
        "warm_ratio_to_baseline": round(warm_s / baseline, 3),
        "cold_ratio_to_baseline": round(cold_s / baseline, 3),
        "redis_benchmark_trivial_evalsha": bench,
        "warm_ratio_to_redis_benchmark": round(warm_s / bench["seconds"], 3) if bench else None,
        "sessions_per_s_warm": round(n / warm_s),
        "get_during_warm_sweep": during,
        "get_idle": idle,
        "cluster_3_primaries": three,
        "cluster_1_primary": one,
        "cluster_3_over_1": round(three["sessions_per_s_warm"] / one["sessions_per_s_warm"], 3),
        "redis_bytes_per_session": round((used1 - used0) / n),
        "memory_usage_one_session_bytes": sample,
        "cold_report": {"updated": cold.updated, "unchanged": cold.unchanged},
        "partitions": partitions.COUNT,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--get-probe"]:
        get_probe(sys.argv[2], int(sys.argv[3]))
        raise SystemExit(0)
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--cluster-sessions", type=int, default=None)
    opts = parser.parse_args()
    cn = opts.cluster_sessions if opts.cluster_sessions is not None else min(opts.n, 200_000)
    json.dump(asyncio.run(main(opts.n, cn)), sys.stdout)
    print()
