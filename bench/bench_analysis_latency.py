"""Analysis wall time from ``analyze`` to ``analysis_complete`` minus the metric delay, with N
sessions starting at once (default 100 and 1,000), against the real server (a subprocess) and
a private redis-server on this machine. Baseline in the same run: a ping/pong round trip with
the same N connections at once. Also the server's resident memory per open WebSocket and Redis
bytes per session.

    uv run --frozen python bench/bench_analysis_latency.py [--client lean|websockets] [N ...]

The client shares the two cores with the server and Redis, so by default it is ``lean_ws``, a
minimal RFC 6455 client whose CPU per message is a few microseconds; ``--client websockets``
runs the ``websockets`` library's client instead (it costs the round 5-15 ms more CPU).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol, cast

import httpx
import uvloop
import websockets

from lean_ws import LeanWebSocket
from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.embedded import EmbeddedRedis, free_port

DELAY = 0.5  # every metric takes exactly this long, so the overhead is wall - DELAY
COMPLETE = '{"type":"analysis_complete"'
PONG = '{"type":"pong"'
SNAPSHOT = '{"type":"session"'
HOLDINGS = {"AAPL": 100, "GOOGL": 50, "MSFT": 75, "IBM": 20}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


class Conn(Protocol):
    async def call(self, text: str, until: str) -> None:
        """Send ``text``, then wait for the next message that starts with ``until``."""

    async def close(self) -> None: ...


class LeanConn:
    def __init__(self, ws: LeanWebSocket) -> None:
        self.ws = ws

    async def call(self, text: str, until: str) -> None:
        answered = self.ws.expect(until)
        self.ws.send(text)
        await answered

    async def close(self) -> None:
        await self.ws.close()


class LibraryConn:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def call(self, text: str, until: str) -> None:
        await self.ws.send(text)
        while not (await self.ws.recv()).startswith(until):
            pass

    async def close(self) -> None:
        await self.ws.close()


async def connect(client: str, base: str, path: str) -> Conn:
    if client == "lean":
        host, port = base.removeprefix("http://").split(":")
        return LeanConn(await LeanWebSocket.connect(host, int(port), path, SNAPSHOT))
    ws = await websockets.connect(base.replace("http", "ws", 1) + path, max_queue=None)
    await ws.recv()  # the snapshot
    return LibraryConn(ws)


async def one_round(
    base: str, n: int, server_pid: int, redis_pid: int, client: str
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        sessions = []
        for _ in range(n):
            r = await http.post("/api/sessions", json={"holdings": HOLDINGS})
            sessions.append((r.json()["session_id"], r.json()["token"]))
    rss0 = rss_bytes(server_pid)
    conns = [
        await connect(client, base, f"/ws/sessions/{sid}?token={tok}") for sid, tok in sessions
    ]
    rss1 = rss_bytes(server_pid)

    async def ping(ws: Conn) -> float:
        t = time.perf_counter()
        await ws.call('{"action":"ping"}', PONG)
        return time.perf_counter() - t

    async def analyze(ws: Conn) -> float:
        t = time.perf_counter()
        # the server's messages start with their type: the client matches the prefix and does
        # not parse, to keep its own CPU (it shares the two cores) out of the measurement
        await ws.call('{"action":"analyze","ticker":"AAPL"}', COMPLETE)
        return time.perf_counter() - t - DELAY

    await asyncio.gather(*(ping(ws) for ws in conns))  # warm-up round, not measured
    pings = await asyncio.gather(*(ping(ws) for ws in conns))
    gc.collect()
    gc.disable()  # a collection in this client would be counted as the server's latency
    cpu0 = (cpu_s(server_pid), cpu_s(redis_pid), time.process_time())
    overheads = await asyncio.gather(*(analyze(ws) for ws in conns))
    cpu1 = (cpu_s(server_pid), cpu_s(redis_pid), time.process_time())
    gc.enable()
    server_cpu, redis_cpu, client_cpu = (b - a for a, b in zip(cpu0, cpu1, strict=True))
    for ws in conns:
        await ws.close()
    p99, base99 = pct(overheads, 0.99), pct(pings, 0.99)
    return {
        "sessions": n,
        "analysis_overhead_ms_p50": round(statistics.median(overheads) * 1000, 2),
        "analysis_overhead_ms_p99": round(p99 * 1000, 2),
        "baseline_ping_ms_p50": round(statistics.median(pings) * 1000, 2),
        "baseline_ping_ms_p99": round(base99 * 1000, 2),
        "ratio_p99_to_ping_p99": round(p99 / base99, 2) if base99 else None,
        "cpu_ms_per_analysis": {
            "server": round(server_cpu * 1000 / n, 3),
            "redis": round(redis_cpu * 1000 / n, 3),
            "client": round(client_cpu * 1000 / n, 3),
        },
        "server_rss_bytes_per_websocket": round((rss1 - rss0) / n),
    }


async def main(sizes: list[int], client: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "analysis_latency", "metric_delay_s": DELAY, "client": client, "rounds": []
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as d, EmbeddedRedis(Path(d), durable=False).running() as rs:
        port = free_port()
        env = {**os.environ, "MARKETPULSE_REDIS_URL": rs.url, "MARKETPULSE_PORT": str(port),
               "MARKETPULSE_METRIC_DELAY": str(DELAY), "MARKETPULSE_MARKET_INTERVAL": "3600",
               "MARKETPULSE_LOG_LEVEL": "WARNING",
               # every client of the load is one address (loopback): past the default 64
               "MARKETPULSE_WS_MAX_PER_CLIENT": "100000"}  # fmt: skip
        proc = subprocess.Popen(  # noqa: ASYNC220 - starts the server; nothing waits on it here
            [sys.executable, "-m", "marketpulse", "serve"], env=env
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base) as http:
                for _ in range(300):
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)  # polling the child's readiness probe
            for n in sizes:
                out["rounds"].append(await one_round(base, n, proc.pid, rs.pid, client))
            import redis

            sync = redis.Redis.from_url(rs.url)
            first = next(
                ids[0]
                for p in partitions.ALL
                if (ids := cast(list[bytes], sync.zrange(keys.session_index(p), 0, 0)))
            )
            sid = first.decode()
            out["redis_bytes_one_session_with_5_results"] = sync.memory_usage(keys.session(sid))
            sync.close()
        finally:
            proc.terminate()
            proc.wait(20)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    client = "lean"
    if args[:1] == ["--client"]:
        client, args = args[1], args[2:]
    if client not in ("lean", "websockets"):
        raise SystemExit("--client is lean or websockets")
    ns = [int(a) for a in args] or [100, 1000]
    # the client on uvloop too: it shares the two cores with the server and Redis
    json.dump(uvloop.run(main(ns, client)), sys.stdout)
    print()
