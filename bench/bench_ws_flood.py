"""Other clients' latency while one WebSocket floods (docs/contracts.md, "Limits").

A ``marketpulse serve`` process (its own redis-server, the default limits) serves ``C`` session
clients in this process, each sending ``{"action": "ping"}`` every 100 ms (under the soft rate
of 20 a second) and timing its ``pong`` (a ping touches the session in Redis). Three phases, in
the same run:

- ``baseline``: nobody floods;
- ``paced``: one socket, in another process, sends 90 messages a second (under the hard rate,
  over the soft one: most are answered ``rate_limited``) for the whole phase;
- ``blast``: one socket sends as fast as it can, is closed with 1008 at the hard limit,
  reconnects and does it again, for the whole phase;
- ``cpu_only``: the control for ``blast`` on a small machine: a process that only burns a CPU
  for the whole phase, as the blasting process does, and sends nothing.

Prints the p50/p99 of the pings' round trips in each phase and their ratio to the baseline,
and what the flooder achieved (messages sent, closes).

    uv run --frozen python bench/bench_ws_flood.py [CLIENTS (10)] [PINGS each (50)]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import websockets

from marketpulse.infra.redis.embedded import EmbeddedRedis, free_port

PING_EVERY_S = 0.1  # each measuring client's pace: well under the soft rate
PACED_RATE = 90.0  # messages per second: under the default hard rate (100), over the soft (20)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


@contextlib.contextmanager
def service(redis_url: str, port: int) -> Iterator[str]:
    env = {
        **os.environ,
        "MARKETPULSE_ENV_FILE": "",
        "MARKETPULSE_REDIS_URL": redis_url,
        "MARKETPULSE_WATCHLIST": "none",
        "MARKETPULSE_LOG_LEVEL": "WARNING",
        "MARKETPULSE_MARKET_INTERVAL": "3600",
    }
    cmd = [str(Path(sys.executable).parent / "marketpulse"), "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness probe, bounded
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the service did not become ready")
            time.sleep(0.1)  # wait-ok: a bench's readiness poll
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


async def create(base: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.post("/api/sessions", json={"holdings": {"AAPL": 10, "MSFT": 5}})
        r.raise_for_status()
        return r.json()["session_id"], r.json()["token"]


def ws_url(base: str, sid: str, token: str) -> str:
    return base.replace("http://", "ws://") + f"/ws/sessions/{sid}?token={token}"


async def pinger(url: str, pings: int) -> list[float]:
    rtts: list[float] = []
    async with websockets.connect(url) as ws:
        await ws.recv()  # the snapshot
        for _ in range(pings):
            started = time.perf_counter()
            await ws.send('{"action":"ping"}')
            while json.loads(await ws.recv())["type"] != "pong":
                pass
            rtts.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(PING_EVERY_S)  # wait-ok: the client's pace
    return rtts


async def _flood(url: str, mode: str, stop: Any, out: Any) -> None:
    sent = closes = 0
    if mode == "cpu_only":
        while not stop.is_set():
            sum(range(10_000))  # a busy client process, nothing sent
        out.put({"sent": 0, "closed_1008": 0})
        return
    while not stop.is_set():
        async with websockets.connect(url, max_queue=None) as ws:
            try:
                while not stop.is_set():
                    await ws.send('{"action":"dance"}')
                    sent += 1
                    if mode == "paced":
                        await asyncio.sleep(1 / PACED_RATE)  # wait-ok: the flooder's pace
                    elif sent % 50 == 0:
                        await asyncio.sleep(0)  # let the reader see the close
            except websockets.ConnectionClosed:
                closes += 1
    out.put({"sent": sent, "closed_1008": closes})


def flood(url: str, mode: str, stop: Any, out: Any) -> None:
    asyncio.run(_flood(url, mode, stop, out))


async def phase(base: str, sessions: list[tuple[str, str]], pings: int) -> list[float]:
    results = await asyncio.gather(*(pinger(ws_url(base, s, t), pings) for s, t in sessions))
    return [x for r in results for x in r]


async def main(clients: int, pings: int) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": "ws_flood", "clients": clients, "pings_each": pings}
    with (
        tempfile.TemporaryDirectory() as d,
        EmbeddedRedis(Path(d), durable=False).running() as rs,
        service(rs.url, free_port()) as base,
    ):
        sessions = [await create(base) for _ in range(clients)]
        flooder = await create(base)
        await phase(base, sessions, 5)  # warm up
        base_rtts = await phase(base, sessions, pings)
        out["baseline_ms"] = {
            "p50": round(pct(base_rtts, 0.5), 2),
            "p99": round(pct(base_rtts, 0.99), 2),
        }
        ctx = multiprocessing.get_context("spawn")
        for mode in ("paced", "blast", "cpu_only"):
            stop, q = ctx.Event(), ctx.Queue()
            proc = ctx.Process(target=flood, args=(ws_url(base, *flooder), mode, stop, q))
            proc.start()
            await asyncio.sleep(1.0)  # wait-ok: the flood is under way before measuring
            rtts = await phase(base, sessions, pings)
            stop.set()
            got = q.get(timeout=30)
            proc.join(30)
            p50, p99 = pct(rtts, 0.5), pct(rtts, 0.99)
            out[mode] = {
                "p50_ms": round(p50, 2),
                "p99_ms": round(p99, 2),
                "p50_ratio": round(p50 / out["baseline_ms"]["p50"], 2),
                "p99_ratio": round(p99 / out["baseline_ms"]["p99"], 2),
                "flooder": got,
            }
    return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(asyncio.run(main(args[0] if args else 10, args[1] if len(args) > 1 else 50))))
