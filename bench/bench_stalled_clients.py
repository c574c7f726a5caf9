"""The server's memory while many clients stall (docs/contracts.md, "Limits": the send buffer).

A ``marketpulse serve`` process (its own redis-server; ``MARKETPULSE_WS_SEND_BUFFER`` at its
minimum, 64 KiB; the socket counts raised for one address) serves ``N`` session sockets whose
clients never read past the snapshot (a 4 KiB receive buffer, a one-frame queue). Each session's
channel then gets ``ROUNDS`` rounds of 64 events of 4 KB (256 KB a round per client), as a
stream of results would. Same run, two phases:

- ``reading``: the clients read (the baseline: the same events; a client this process cannot
  keep reading fast enough is closed too, so ``events_read`` may fall short);
- ``stalled``: the clients read nothing; each is closed with 1008 once it leaves more than the
  bound unsent, and dropped when it has not read the close within 5 s.

Prints the server's RSS growth in each phase (MiB, from ``/proc/<pid>/status``), the growth per
stalled client against the bound, and how many stalled connections the server ended.

    uv run --frozen python bench/bench_stalled_clients.py [N (1000)] [ROUNDS (8)]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import websockets
from redis.asyncio import Redis

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.embedded import EmbeddedRedis, free_port

BOUND = 64 << 10
EVENTS = 64  # per round and session
FILLER = "x" * 4000


@contextlib.contextmanager
def service(redis_url: str, port: int, log: Path) -> Iterator[tuple[str, int]]:
    env = {
        **os.environ,
        "MARKETPULSE_ENV_FILE": "",
        "MARKETPULSE_REDIS_URL": redis_url,
        "MARKETPULSE_WATCHLIST": "none",
        "MARKETPULSE_LOG_LEVEL": "INFO",
        "MARKETPULSE_MARKET_INTERVAL": "3600",
        "MARKETPULSE_WS_SEND_BUFFER": str(BOUND),
        "MARKETPULSE_WS_MAX_PER_CLIENT": "100000",
    }
    cmd = [str(Path(sys.executable).parent / "marketpulse"), "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness probe, bounded
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the service did not become ready")
            time.sleep(0.1)  # wait-ok: a bench's readiness poll
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def connect(base: str, sid: str, token: str, *, stall: bool) -> websockets.ClientConnection:
    """A session client; ``stall``: one that will read nothing (a 4 KiB receive window, a
    one-frame queue)."""
    url = base.replace("http://", "ws://") + f"/ws/sessions/{sid}?token={token}"
    if not stall:
        ws = await websockets.connect(url, max_size=None)
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        sock.setblocking(False)
        ws = await websockets.connect(url, sock=sock, max_queue=1, ping_interval=None)
    await ws.recv()  # the snapshot
    return ws


async def open_sockets(base: str) -> int:
    """The server's count of open session sockets (``/metrics``)."""
    async with httpx.AsyncClient(base_url=base) as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("marketpulse_connected_clients{") and 'kind="session"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    raise RuntimeError("no marketpulse_connected_clients in /metrics")


async def subscriber_backlog(redis: Redis) -> int:
    """Bytes Redis holds for its pub/sub clients (the service's hub) not yet sent."""
    clients = await redis.client_list(_type="pubsub")
    return max((int(c.get("omem", 0)) for c in clients), default=0)


async def publish(redis: Redis, sids: list[str], rounds: int, start: int) -> None:
    """Every session's events, paced so that Redis never holds more than 4 MB for the service
    (its pub/sub output limit would drop the service's connection: that is not the bench)."""
    v = start
    for _ in range(rounds):
        for i in range(0, len(sids), 10):
            async with redis.pipeline(transaction=False) as pipe:
                for sid in sids[i : i + 10]:
                    for k in range(EVENTS):
                        body = f'{{"type":"analysis_result","seq":{v + k},"f":"{FILLER}"}}'
                        pipe.spublish(keys.session_events(sid), f"{v + k}\n{body}")
                await pipe.execute()
            while await subscriber_backlog(redis) > 4 << 20:  # noqa: ASYNC110 - polls Redis, no event to await
                await asyncio.sleep(0.005)  # wait-ok: the publisher's pacing
        v += EVENTS
    await redis.ping()


async def drain(ws: websockets.ClientConnection, n: int) -> int:
    got = 0
    with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
        async with asyncio.timeout(60):
            while got < n:
                await ws.recv()
                got += 1
    return got


async def main(n: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": "stalled_clients", "clients": n, "rounds": rounds}
    out["bytes_per_client"] = rounds * EVENTS * (len(FILLER) + 50)
    out["bound_bytes"] = BOUND
    with (
        tempfile.TemporaryDirectory() as d,
        EmbeddedRedis(Path(d), durable=False).running() as rs,
        service(rs.url, free_port(), Path(d) / "service.log") as (base, pid),
    ):
        redis = Redis.from_url(rs.url)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            sessions = []
            for _ in range(n):
                r = await http.post("/api/sessions", json={"holdings": {"AAPL": 1}})
                sessions.append((r.json()["session_id"], r.json()["token"]))
        sids = [s for s, _ in sessions]

        # the baseline: the same clients read everything
        clients = [await connect(base, s, t, stall=False) for s, t in sessions]
        rss0 = rss_mib(pid)
        pub = asyncio.ensure_future(publish(redis, sids, rounds, 10**6))
        got = await asyncio.gather(*(drain(c, rounds * EVENTS) for c in clients))
        await pub
        rss1 = rss_mib(pid)
        out["reading"] = {
            "rss_before_mib": round(rss0, 1),
            "rss_growth_mib": round(rss1 - rss0, 1),
            "events_read": sum(got),
        }
        for c in clients:
            await c.close()

        # the same volume to clients that read nothing
        clients = [await connect(base, s, t, stall=True) for s, t in sessions]
        rss2 = rss_mib(pid)
        await publish(redis, sids, rounds, 2 * 10**6)
        rss3 = rss_mib(pid)  # every event handed to the server
        still_open = await open_sockets(base)
        # the server drops each connection whose close frame was not read within 5 s
        await asyncio.sleep(6)  # wait-ok: past the server's abort timer
        rss4 = rss_mib(pid)
        out["stalled"] = {
            "rss_before_mib": round(rss2, 1),
            "rss_growth_mib": round(rss3 - rss2, 1),
            "growth_per_client_kib": round((rss3 - rss2) * 1024 / n, 1),
            "rss_growth_after_drop_mib": round(rss4 - rss2, 1),
            "closed_by_server": n - still_open,
        }
        log = (Path(d) / "service.log").read_text()
        # 1008 past the bound (or too many events queued); the rest of the closes are the
        # keepalive's (1011: a client that reads nothing answers no ping either)
        out["stalled"]["closed_1008_too_slow"] = log.count("closing it")
        out["pubsub_outages"] = log.count("is unreachable")
        out["stalled_vs_reading_growth"] = round((rss3 - rss2) / max(0.1, rss1 - rss0), 2)
        for c in clients:
            c.transport.abort()
        await redis.aclose()
    return out


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(asyncio.run(main(args[0] if args else 1000, args[1] if len(args) > 1 else 8))))
