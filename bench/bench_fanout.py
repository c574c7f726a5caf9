"""Fan-out at scale (issue 18, item 7): what one server process pays per idle session socket,
and how long a committed result takes to reach its client while 5,000 a second are committed.

A real ``marketpulse serve`` (its own private redis-server on loopback, the in-process workers
off so that nothing takes the runs the bench starts) and, in the same run, a bare WebSocket
echo app under the same uvicorn with the same protocol options (``ws_options()``): the floor
that uvicorn, ``websockets`` and the transport cost per socket. The client is another process
(this file with ``--client``): ``lean_ws`` sockets, a few microseconds of CPU per message, so
that the client's own work stays out of the figures.

1. **Memory.** N sockets (default 10,000) are opened, 1,000 at a time, and the server's RSS is
   read (``/proc/<pid>/status``) after each step: the bytes per socket over the N, and between
   1,000 and N (the marginal cost, past the first allocations). The same for the echo server.
2. **Latency.** With the N sockets open, each session has a run (started by the bench through
   the store), and the bench commits results with the real append script
   (``analysis_append.lua``: appended, then published in the same step) at RATE a second
   (default 5,000), round robin over the sessions, for SECONDS. Each result's id carries the
   ``CLOCK_MONOTONIC`` time its script was sent; the client subtracts it from the time the
   frame arrived (the clock is the machine's, shared by the processes): commit to client, with
   Redis's queueing counted in. The baseline, on the same sockets, before: ``{"action":
   "ping"}`` at the same RATE for the same time, timed to its ``pong`` by the client (a ping
   touches the session in Redis, as a commit does). Each phase also reports the server's CPU
   share and the event-loop lags over 250 ms its log reported (a full garbage collection of a
   heap this size is one: it shows in the tail).

The process's file-descriptor limit is raised to its hard limit (the children inherit it);
the JSON says what the machine allows.

    uv run --frozen python bench/bench_fanout.py [N (10000)] [RATE (5000)] [SECONDS (10)]
    uv run --frozen python bench/bench_fanout.py --traced [N (2000)]

``--traced`` runs the service under ``tracemalloc`` and prints where the bytes of the sockets
between N/2 and N were allocated (per socket, by line), instead of the figures above
(``PYTHONTRACEMALLOC=<frames>`` in the environment keeps more frames per allocation).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx

from lean_ws import LeanWebSocket
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis, free_port
from marketpulse.sessions.store import SessionStore, hash_token

STEP = 1000  # sockets opened between two RSS readings
CONNECTING = 100  # handshakes in flight at once
SNAPSHOT = '{"type":"session"'
RESULT = b'{"type":"analysis_result"'
PONG = b'{"type":"pong"'
HOLDINGS = {"AAPL": 10, "MSFT": 5}
TICK_S = 0.01  # the publisher and the pinger send a batch every 10 ms
HERE = Path(__file__).resolve()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def stats(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50": round(pct(xs, 0.5), 2), "p99": round(pct(xs, 0.99), 2),
            "max": round(max(xs, default=float("nan")), 2)}  # fmt: skip


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_nofile() -> dict[str, int]:
    """Raise this process's open-file limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return {"soft_before": soft, "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "hard": hard}  # fmt: skip


# ---------------------------------------------------------------- the client process


class FanoutClient:
    """The sockets of the load, each answering to its index: pongs and results are timed."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.socks: list[LeanWebSocket] = []
        self.ping_at: list[float] = []
        self.pongs: list[float] = []
        self.results: list[float] = []

    def on_text(self, i: int, data: bytes) -> None:
        if data.startswith(RESULT):
            at = data.find(b'"id":"') + 6
            rid = data[at : data.find(b'"', at)]
            sent_ns = int(rid.rsplit(b"-", 1)[1])
            self.results.append((time.monotonic_ns() - sent_ns) / 1e6)
        elif data.startswith(PONG) and self.ping_at[i]:
            self.pongs.append((time.monotonic() - self.ping_at[i]) * 1000)
            self.ping_at[i] = 0.0

    async def connect(self, paths: list[str]) -> dict[str, Any]:
        gate = asyncio.Semaphore(CONNECTING)
        failed = 0

        async def one(path: str) -> LeanWebSocket | None:
            nonlocal failed
            async with gate:
                try:
                    return await LeanWebSocket.connect(self.host, self.port, path, SNAPSHOT)
                except (OSError, ConnectionError):
                    failed += 1
                    return None

        for ws in await asyncio.gather(*(one(p) for p in paths)):
            if ws is not None:
                ws.on_text = functools.partial(self.on_text, len(self.socks))
                self.socks.append(ws)
                self.ping_at.append(0.0)
        return {"open": len(self.socks), "failed": failed}

    async def pings(self, rate: float, seconds: float) -> dict[str, Any]:
        """A ping every 1/rate s, round robin over the sockets; each timed to its pong."""
        self.pongs = []
        per_tick = max(1, round(rate * TICK_S))
        ticks = round(seconds / TICK_S)
        start, k, sent = time.monotonic(), 0, 0
        for t in range(ticks):
            delay = start + t * TICK_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # wait-ok: the client's pace
            now = time.monotonic()
            for _ in range(per_tick):
                i = k % len(self.socks)
                k += 1
                if self.ping_at[i]:
                    continue  # its last ping is still out (past a whole round): skipped
                self.ping_at[i] = now
                self.socks[i].send('{"action":"ping"}')
                sent += 1
        elapsed = time.monotonic() - start
        deadline = time.monotonic() + 5
        while len(self.pongs) < sent and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # wait-ok: the last pongs in flight
        return {"sent": sent, "rate": round(sent / elapsed), "ms": stats(self.pongs),
                "lost": sent - len(self.pongs)}  # fmt: skip

    def take_results(self) -> dict[str, Any]:
        got, self.results = self.results, []
        return {"ms": stats(got)}

    def drop(self) -> dict[str, Any]:
        n = len(self.socks)
        for ws in self.socks:
            if ws.transport is not None:
                ws.transport.abort()
        self.socks, self.ping_at = [], []
        return {"dropped": n}


async def client_main(host: str, port: int) -> None:
    """Commands on stdin, one JSON object a line; each answered with one on stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    client = FanoutClient(host, port)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "port":
            client.port = cmd["port"]
            out: dict[str, Any] = {}
        elif cmd["cmd"] == "connect":
            out = await client.connect(cmd["paths"])
        elif cmd["cmd"] == "pings":
            out = await client.pings(cmd["rate"], cmd["seconds"])
        elif cmd["cmd"] == "results":
            out = client.take_results()
        elif cmd["cmd"] == "received":
            out = {"n": len(client.results)}
        else:
            out = client.drop()
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


class Child:
    """The client process, driven line by line."""

    def __init__(self, port: int) -> None:
        cmd = [sys.executable, str(HERE), "--client", "127.0.0.1", str(port)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    async def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        stdin: IO[str] = self.proc.stdin
        stdout: IO[str] = self.proc.stdout

        def exchange() -> dict[str, Any]:
            stdin.write(json.dumps(cmd) + "\n")
            stdin.flush()
            line = stdout.readline()
            if not line:
                raise RuntimeError("the client process ended")
            out: dict[str, Any] = json.loads(line)
            return out

        return await asyncio.to_thread(exchange)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


# ---------------------------------------------------------------- the servers


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The baseline: a bare WebSocket echo (it greets as a session socket does)."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": '{"type":"session"}'})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": msg.get("text") or ""})


def echo_main(port: int) -> None:
    import uvicorn

    from marketpulse.infra.ws.protocol import ws_options

    uvicorn.run(echo_app, host="127.0.0.1", port=port, log_level="warning", **ws_options())


def traced_serve_main(snap_dir: str) -> None:
    """``marketpulse serve`` under tracemalloc; SIGUSR1 writes a snapshot (snap-<n>)."""
    import tracemalloc

    from marketpulse.cli import main

    tracemalloc.start(int(os.environ.get("PYTHONTRACEMALLOC") or 1))
    taken = 0

    def snapshot(*_: Any) -> None:
        nonlocal taken
        taken += 1
        tmp = Path(snap_dir) / f".snap-{taken}"
        tracemalloc.take_snapshot().dump(str(tmp))
        tmp.rename(Path(snap_dir) / f"snap-{taken}")

    signal.signal(signal.SIGUSR1, snapshot)
    raise SystemExit(main(["serve"]))


def wait_port(port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the server did not start")
        time.sleep(0.1)  # wait-ok: a bench's readiness poll


class ServerLog:
    """The service's log (a file): the event-loop lags it reported (its health warning, past
    250 ms: a full garbage collection of a large heap shows there) since a mark."""

    LAG = re.compile(r"loop lag of event_loop is ([0-9.]+) ms")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.at = 0

    def mark(self) -> None:
        self.at = len(self.path.read_text().splitlines())

    def lags_ms(self) -> list[float]:
        lines = self.path.read_text().splitlines()[self.at :]
        return [float(m[1]) for line in lines if (m := self.LAG.search(line))]


@contextlib.contextmanager
def service(
    redis_url: str, port: int, snap_dir: str | None, log: Path
) -> Iterator[subprocess.Popen[Any]]:
    env = {
        **os.environ,
        "MARKETPULSE_ENV_FILE": "",
        "MARKETPULSE_REDIS_URL": redis_url,
        "MARKETPULSE_PORT": str(port),
        "MARKETPULSE_WATCHLIST": "none",
        "MARKETPULSE_LOG_LEVEL": "WARNING",
        "MARKETPULSE_MARKET_INTERVAL": "3600",
        "MARKETPULSE_WORKERS_IN_PROCESS": "false",  # the bench commits the results itself
        "MARKETPULSE_WS_MAX_PER_CLIENT": "1000000",  # every socket of the load is loopback
    }
    if snap_dir is None:
        cmd = [sys.executable, "-m", "marketpulse", "serve"]
    else:
        cmd = [sys.executable, str(HERE), "--traced-serve", snap_dir]
    proc = subprocess.Popen(cmd, env=env, stderr=log.open("w"))
    try:
        deadline = time.monotonic() + 60
        while True:  # readiness probe, bounded
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the service did not become ready")
            time.sleep(0.1)  # wait-ok: a bench's readiness poll
        yield proc
    finally:
        proc.send_signal(signal.SIGKILL)  # 10,000 graceful closes are not the bench
        proc.wait(30)


async def create_sessions(base: str, n: int) -> list[tuple[str, str]]:
    """``n`` sessions through the HTTP API, 16 requests at a time."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:

        async def one() -> tuple[str, str]:
            r = await http.post("/api/sessions", json={"holdings": HOLDINGS})
            r.raise_for_status()
            return r.json()["session_id"], r.json()["token"]

        out: list[tuple[str, str]] = []
        while len(out) < n:
            out += await asyncio.gather(*(one() for _ in range(min(16, n - len(out)))))
    return out


async def open_in_steps(
    child: Child, pid: int, paths: list[str], on_step: Any = None
) -> dict[str, Any]:
    """Open ``paths`` STEP at a time; the server's RSS after each step."""
    rss = [rss_bytes(pid)]
    opened = 0
    for at in range(0, len(paths), STEP):
        got = await child.call(cmd="connect", paths=paths[at : at + STEP])
        opened = got["open"]
        rss.append(rss_bytes(pid))
        if on_step is not None:
            await on_step(opened)
    n = len(paths)
    first = min(STEP, n)
    return {
        "open": opened,
        "rss_before_mib": round(rss[0] / 2**20, 1),
        "rss_after_mib": round(rss[-1] / 2**20, 1),
        "bytes_per_socket": round((rss[-1] - rss[0]) / max(1, opened)),
        "marginal_bytes_per_socket": round((rss[-1] - rss[1]) / max(1, opened - first)),
        "rss_steps_mib": [round(r / 2**20, 1) for r in rss],
    }


async def commit(
    store: SessionStore, runs: list[tuple[str, str, int]], rate: float, seconds: float
) -> dict[str, Any]:
    """Results at ``rate`` a second, round robin over the runs, each id carrying its send time."""
    per_tick = max(1, round(rate * TICK_S))
    ticks = round(seconds / TICK_S)
    start, k = time.monotonic(), 0
    pending: set[asyncio.Task[Any]] = set()

    async def one(sid: str, run: str, basis: int, seq: int) -> None:
        rid = f"{seq}-{time.monotonic_ns()}"
        body = json.dumps({"ticker": "AAPL", "metric": "momentum", "value": 0.01,
                           "timestamp": "2026-01-02T00:00:00.000Z", "run_id": run,
                           "basis_version": basis, "id": rid}, separators=(",", ":"))  # fmt: skip
        status = await store.append_result(sid, run, basis, rid, body, 1 << 30)
        if status != "ok":
            raise RuntimeError(f"append answered {status}")

    for t in range(ticks):
        delay = start + t * TICK_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # wait-ok: the publisher's pace
        for _ in range(per_tick):
            sid, run, basis = runs[k % len(runs)]
            task = asyncio.create_task(one(sid, run, basis, k))
            pending.add(task)
            task.add_done_callback(pending.discard)
            k += 1
    if pending:
        await asyncio.gather(*pending)
    elapsed = time.monotonic() - start
    return {"committed": k, "rate": round(k / elapsed)}


async def traced(
    n: int, snap_dir: Path, pid: int, child: Child, paths: list[str]
) -> dict[str, Any]:
    import tracemalloc

    half = n // 2
    taken = 0

    async def on_step(opened: int) -> None:
        nonlocal taken
        if opened in (half, n):
            os.kill(pid, signal.SIGUSR1)
            deadline = time.monotonic() + 120
            while not (snap_dir / f"snap-{taken + 1}").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("no snapshot from the service")
                await asyncio.sleep(0.1)  # wait-ok: the service writes its snapshot
            taken += 1

    await open_in_steps(child, pid, paths, on_step)
    a = tracemalloc.Snapshot.load(str(snap_dir / "snap-1"))
    b = tracemalloc.Snapshot.load(str(snap_dir / "snap-2"))
    per = n - half
    stats_ = b.compare_to(a, "lineno")
    total = sum(s.size_diff for s in stats_)
    return {
        "bench": "fanout_traced",
        "sockets_between": [half, n],
        "traced_bytes_per_socket": round(total / per),
        "top": [
            {"where": f"{s.traceback[0].filename.split('site-packages/')[-1]}:"
                      f"{s.traceback[0].lineno}",
             "bytes_per_socket": round(s.size_diff / per, 1),
             "blocks_per_socket": round(s.count_diff / per, 2)}
            for s in stats_[:30]
        ],
    }  # fmt: skip


async def main(n: int, rate: float, seconds: float, trace: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": "fanout", "sockets": n, "rate": rate, "seconds": seconds}
    out["nofile"] = raise_nofile()
    with tempfile.TemporaryDirectory() as d, EmbeddedRedis(Path(d), durable=False).running() as rs:
        child = Child(0)
        try:
            if not trace:
                port = free_port()
                echo = subprocess.Popen(  # noqa: ASYNC220 - the baseline server; not awaited here
                    [sys.executable, str(HERE), "--echo", str(port)]
                )
                try:
                    wait_port(port, echo)
                    await child.call(cmd="port", port=port)
                    out["echo_baseline"] = await open_in_steps(child, echo.pid, ["/echo"] * n)
                finally:
                    echo.kill()
                    echo.wait(30)
                await child.call(cmd="drop")
            port = free_port()
            snap_dir = Path(d) / "snaps"
            snap_dir.mkdir()
            log = ServerLog(Path(d) / "service.log")
            with service(rs.url, port, str(snap_dir) if trace else None, log.path) as proc:
                base = f"http://127.0.0.1:{port}"
                sessions = await create_sessions(base, n)
                paths = [f"/ws/sessions/{sid}?token={tok}" for sid, tok in sessions]
                await child.call(cmd="port", port=port)
                if trace:
                    return await traced(n, snap_dir, proc.pid, child, paths)
                out["service"] = await open_in_steps(child, proc.pid, paths)
                out["service_to_echo_bytes_ratio"] = round(
                    out["service"]["bytes_per_socket"]
                    / max(1, out["echo_baseline"]["bytes_per_socket"]),
                    2,
                )
                out["latency"] = await latency(
                    rs.url, proc.pid, child, sessions, rate, seconds, log
                )
        finally:
            with contextlib.suppress(RuntimeError):
                await child.call(cmd="drop")
            child.stop()
    return out


async def latency(
    url: str,
    pid: int,
    child: Child,
    sessions: list[tuple[str, str]],
    rate: float,
    seconds: float,
    log: ServerLog,
) -> dict[str, Any]:
    client = RedisClient.from_url(url)
    store = SessionStore(client, ttl_s=86400)
    now = "2026-01-02T00:00:00.000Z"
    runs: list[tuple[str, str, int]] = []
    for at in range(0, len(sessions), 500):
        chunk = sessions[at : at + 500]
        snaps = await asyncio.gather(
            *(store.start_analysis(s, hash_token(t), "AAPL", f"bench-{s}", now) for s, t in chunk)
        )
        runs += [
            (s, snap.run_id, snap.basis_version) for (s, _), snap in zip(chunk, snaps, strict=True)
        ]
    await child.call(cmd="pings", rate=rate, seconds=1)  # warm-up
    log.mark()
    cpu0 = cpu_s(pid)
    pings = await child.call(cmd="pings", rate=rate, seconds=seconds)
    cpu1 = cpu_s(pid)
    pings["server_cpu_share"] = round((cpu1 - cpu0) / seconds, 2)
    pings["server_loop_lags_over_250_ms"] = log.lags_ms()
    await child.call(cmd="results")  # nothing before the phase counts
    log.mark()
    cpu0 = cpu_s(pid)
    committed = await commit(store, runs, rate, seconds)
    cpu1 = cpu_s(pid)
    committed["server_cpu_share"] = round((cpu1 - cpu0) / seconds, 2)
    deadline = time.monotonic() + 10
    while (await child.call(cmd="received"))["n"] < committed["committed"]:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)  # wait-ok: the last results in flight
    got = await child.call(cmd="results")
    committed["server_loop_lags_over_250_ms"] = log.lags_ms()
    await client.aclose()
    p99, base99 = got["ms"]["p99"], pings["ms"]["p99"]
    return {
        "ping_baseline": pings,
        "commit_to_client": {**committed, "ms": got["ms"],
                             "lost": committed["committed"] - got["ms"]["n"]},
        "p99_ratio_to_ping_p99": round(p99 / base99, 2) if base99 else None,
    }  # fmt: skip


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--client"]:
        import uvloop

        uvloop.run(client_main(argv[1], int(argv[2])))
    elif argv[:1] == ["--echo"]:
        echo_main(int(argv[1]))
    elif argv[:1] == ["--traced-serve"]:
        traced_serve_main(argv[1])
    else:
        trace = argv[:1] == ["--traced"]
        nums = [float(a) for a in argv[int(trace) :]]
        n = int(nums[0]) if nums else (2000 if trace else 10_000)
        rate = nums[1] if len(nums) > 1 else 5000.0
        seconds = nums[2] if len(nums) > 2 else 10.0
        print(json.dumps(asyncio.run(main(n, rate, seconds, trace))))
