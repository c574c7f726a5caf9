"""The soak: weeks of uptime compressed into minutes. A real ``marketpulse serve`` process on a
private redis-server (loopback), the market revaluing every second, and 20 users cycling
sessions: create (mixed holdings, some on NSE), connect the socket, analyse, switch ticker
mid-run, change holdings mid-run, disconnect, delete.

It samples the server's RSS every ``--sample-s`` seconds (``/proc/<pid>/status``) and, before
the users start and after they have left, its open file descriptors (``/proc/<pid>/fd``), its
asyncio tasks (``/api/system``) and the Redis keys without a TTL (SCAN + TTL). It prints one
JSON object and exits 1 when a target is missed:

- RSS slope (least squares) over the measured window at most ``--slope-limit`` MiB/min
  (default 1). The window is the second half of the run, or the last two thirds of a run of
  three minutes or less (``make soak-short``), so that the first third, where the heap grows
  to its working set, is tolerated as warm-up;
- RSS growth from the users' start to their end at most ``--growth-limit`` MiB (default 30);
- fds, tasks and untimed keys back to their value before the users (fds within
  ``FD_SLACK``: the Redis pool may keep a few more idle connections after the peak than after
  the warm-up, each one fd, bounded by ``MARKETPULSE_REDIS_MAX_CONNECTIONS``; tasks and keys
  exactly). Both are measured with the users' HTTP client closed;
- every user cycle ended (no error) and results were delivered.

Before the baseline, each user runs one warm-up cycle: first-use allocations (imports, pools,
the run stream, compiled scripts) are not a leak.

``--leak`` starts the server through ``bench/soak_leak.py``, a test hook that retains 64 KiB
per created session (never shipped: it lives here and patches the service at start): the soak
must fail it.

    uv run --frozen python bench/soak.py [--minutes 10] [--users 20] [--leak]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis, free_port

HERE = Path(__file__).resolve().parent
UNIVERSE = ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "RELIANCE.NS", "TCS.NS", "INFY.NS"]
STEP_S = 30.0  # every wait of a cycle is bounded by this
READY_S = 60.0
FD_SLACK = 8
MiB = 2**20


@dataclass
class Tally:
    cycles: int = 0
    results: int = 0
    completed: int = 0
    failed_runs: int = 0
    restarts: int = 0
    errors: list[str] = field(default_factory=list)  # the first ten
    error_count: int = 0


class Server:
    """``marketpulse serve`` (or the leaky hook) as a child process, its log in a file."""

    def __init__(self, redis_url: str, log_path: Path, *, leak: bool) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MARKETPULSE_REDIS_URL": redis_url,
            "MARKETPULSE_HOST": "127.0.0.1",
            "MARKETPULSE_PORT": str(self.port),
            "MARKETPULSE_MARKET_INTERVAL": "1",
            "MARKETPULSE_METRIC_DELAY": "0.05-0.2",
            "MARKETPULSE_MAX_RESTARTS": "10",
            "MARKETPULSE_DATA_SOURCE": "simulated",
            "MARKETPULSE_ENV_FILE": "",
        }
        hook = [str(HERE / "soak_leak.py")] if leak else ["-m", "marketpulse"]
        cmd = [sys.executable, *hook, "serve"]
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    async def ready(self, http: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{self.base}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)  # a readiness probe's interval, not a wait for an event
        raise RuntimeError("server not ready")

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        self.log.close()
        return self.proc.returncode


async def untimed_keys(redis: RedisClient) -> int:
    raw = redis.redis
    names = [k async for k in raw.scan_iter(count=1000)]
    if not names:
        return 0
    async with raw.pipeline(transaction=False) as pipe:
        for k in names:
            pipe.ttl(k)
        ttls = await pipe.execute()
    return sum(1 for t in ttls if t == -1)


async def next_of(ws: Any, tally: Tally, *types: str, ticker: str | None = None) -> dict[str, Any]:
    """The next message of one of ``types`` (for ``ticker`` if given), counting the others."""
    async with asyncio.timeout(STEP_S):
        while True:
            msg: dict[str, Any] = json.loads(await ws.recv())
            kind = msg.get("type")
            if kind == "analysis_result":
                tally.results += 1
            elif kind == "analysis_restarted":
                tally.restarts += 1
            elif kind == "error":
                raise RuntimeError(f"error message: {msg}")
            if kind in types and (ticker is None or msg.get("ticker") == ticker):
                return msg


async def cycle(http: httpx.AsyncClient, base: str, rng: random.Random, tally: Tally) -> None:
    """One user's visit; every step bounded by STEP_S."""
    picked = rng.sample(UNIVERSE, rng.randint(2, 4))
    holdings = {t: rng.randint(1, 200) for t in picked}
    body: dict[str, Any] = {"holdings": holdings}
    if rng.random() < 0.25:
        body["base_currency"] = "INR"
    r = await http.post(f"{base}/api/sessions", json=body)
    if r.status_code != 201:
        raise RuntimeError(f"create answered {r.status_code}: {r.text[:200]}")
    sid, token = r.json()["session_id"], r.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    try:
        url = f"{base.replace('http://', 'ws://')}/ws/sessions/{sid}?token={token}"
        async with websockets.connect(url, open_timeout=STEP_S, max_size=2**20) as ws:
            await next_of(ws, tally, "session")
            first, second = picked[0], picked[1]
            await ws.send(json.dumps({"action": "analyze", "ticker": first}))
            await next_of(ws, tally, "analysis_started", ticker=first)
            await next_of(ws, tally, "analysis_result", ticker=first)
            await ws.send(json.dumps({"action": "analyze", "ticker": second}))  # switch mid-run
            await next_of(ws, tally, "analysis_started", ticker=second)
            changed = {**holdings, second: holdings[second] + rng.randint(1, 50)}
            r = await http.put(
                f"{base}/api/sessions/{sid}/holdings", json={"holdings": changed}, headers=auth
            )
            if r.status_code != 200:
                raise RuntimeError(f"holdings answered {r.status_code}: {r.text[:200]}")
            end = await next_of(ws, tally, "analysis_complete", "analysis_failed", ticker=second)
            if end["type"] == "analysis_complete":
                tally.completed += 1
            else:
                tally.failed_runs += 1
    finally:
        r = await http.delete(f"{base}/api/sessions/{sid}", headers=auth)
        if r.status_code != 204:
            raise RuntimeError(f"delete answered {r.status_code}: {r.text[:200]}")
    tally.cycles += 1


async def user(
    n: int, base: str, until: float | None, tally: Tally, http: httpx.AsyncClient
) -> None:
    """Cycles until the monotonic time ``until`` (one cycle when None)."""
    rng = random.Random(n)
    while True:
        try:
            await cycle(http, base, rng, tally)
        except Exception as exc:  # counted and reported: the soak goes on
            tally.error_count += 1
            if len(tally.errors) < 10:
                tally.errors.append(f"user {n}: {type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(1.0)  # a user who hit an error waits before trying again
        if until is None or time.monotonic() >= until:
            return


async def idle_tasks(http: httpx.AsyncClient, base: str, target: int | None) -> int:
    """The server's asyncio task count once idle: polled until it reaches ``target`` (or, with
    no target, until two reads agree), at most 30 s."""
    deadline = time.monotonic() + 30.0
    last = -1
    while True:
        report = (await http.get(f"{base}/api/system")).json()
        tasks = int(report["asyncio_tasks"])
        clients = sum(report["connected_clients"].values())
        settled = tasks == last if target is None else tasks <= target
        if (clients == 0 and settled) or time.monotonic() >= deadline:
            return tasks
        last = tasks
        await asyncio.sleep(0.5)  # a probe's interval: the figure is what is being measured


async def idle_figures(
    server: Server, probe: httpx.AsyncClient, redis: RedisClient, tasks: int | None
) -> dict[str, Any]:
    """The server's figures once idle (no client, tasks settled): fds, asyncio tasks, Redis
    keys without a TTL, RSS."""
    idle = await idle_tasks(probe, server.base, tasks)
    return {
        "fds": server.fds(),
        "asyncio_tasks": idle,
        "untimed_keys": await untimed_keys(redis),
        "rss_mib": round(server.rss() / MiB, 1),
    }


def slope_mib_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, bytes) in MiB per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return (sxy / sxx) * 60.0 / MiB if sxx else 0.0


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    duration = args.minutes * 60.0
    with (
        tempfile.TemporaryDirectory(prefix="marketpulse-soak-") as d,
        EmbeddedRedis(Path(d) / "redis", durable=False).running() as rs,
    ):
        redis = RedisClient.from_url(rs.url)
        server = Server(rs.url, Path(d) / "server.log", leak=args.leak)
        limits = httpx.Limits(max_connections=args.users * 2)
        tally = Tally()
        try:
            # the probe keeps no connection open, and the users' client is closed before each
            # measurement: the server's fds are then its own, not our idle keep-alives
            probe_limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=STEP_S, limits=probe_limits) as probe:
                await server.ready(probe)
                base = server.base
                async with httpx.AsyncClient(timeout=STEP_S, limits=limits) as http:
                    warm = (user(n, base, None, tally, http) for n in range(args.users))
                    await asyncio.gather(*warm)
                warmup_errors = tally.error_count
                tally = Tally()
                before = await idle_figures(server, probe, redis, None)
                start = time.monotonic()
                samples: list[tuple[float, int]] = [(0.0, server.rss())]
                until = start + duration
                async with httpx.AsyncClient(timeout=STEP_S, limits=limits) as http:
                    users = [
                        asyncio.create_task(user(n, base, until, tally, http))
                        for n in range(args.users)
                    ]
                    while not all(u.done() for u in users):
                        await asyncio.wait(users, timeout=args.sample_s)
                        if server.proc.poll() is not None:
                            for u in users:
                                u.cancel()
                            raise RuntimeError(f"the server exited with {server.proc.returncode}")
                        samples.append((time.monotonic() - start, server.rss()))
                    await asyncio.gather(*users)
                elapsed = time.monotonic() - start
                after = await idle_figures(server, probe, redis, before["asyncio_tasks"])
        finally:
            code = server.stop()
            await redis.aclose()
            log_text = (Path(d) / "server.log").read_text(errors="replace")
    return report(args, samples, elapsed, before, after, tally, warmup_errors, code, log_text)


def report(
    args: argparse.Namespace,
    samples: list[tuple[float, int]],
    elapsed: float,
    before: dict[str, Any],
    after: dict[str, Any],
    tally: Tally,
    warmup_errors: int,
    exit_code: int | None,
    log_text: str,
) -> dict[str, Any]:
    window_from = elapsed / 3 if args.minutes <= 3 else elapsed / 2
    window = [(t, v) for t, v in samples if t >= window_from]
    slope = slope_mib_per_min(window)
    growth = (samples[-1][1] - samples[0][1]) / MiB
    checks = {
        "rss_slope": slope <= args.slope_limit,
        "rss_growth": growth <= args.growth_limit,
        "fds": after["fds"] <= before["fds"] + FD_SLACK,
        "asyncio_tasks": after["asyncio_tasks"] <= before["asyncio_tasks"],
        "untimed_keys": after["untimed_keys"] <= before["untimed_keys"],
        "results_delivered": tally.results > 0 and tally.completed > 0,
        "no_cycle_errors": tally.error_count == 0 and warmup_errors == 0,
    }
    return {
        "bench": "soak",
        "leaky_build": args.leak,
        "users": args.users,
        "minutes": round(elapsed / 60, 2),
        "market_interval_s": 1,
        "rss_slope_mib_per_min": round(slope, 3),
        "rss_slope_window_s": [round(window_from, 1), round(elapsed, 1)],
        "rss_growth_mib": round(growth, 2),
        "rss_start_mib": round(samples[0][1] / MiB, 1),
        "rss_end_mib": round(samples[-1][1] / MiB, 1),
        "rss_samples": len(samples),
        "before": before,
        "after": after,
        "cycles": tally.cycles,
        "results_delivered": tally.results,
        "runs_completed": tally.completed,
        "runs_failed": tally.failed_runs,
        "runs_restarted": tally.restarts,
        "errors": tally.errors,
        "error_count": tally.error_count,
        "warmup_errors": warmup_errors,
        "server_exit": exit_code,
        "log_tracebacks": log_text.count("Traceback (most recent call last)"),
        "targets": {
            "rss_slope_mib_per_min": args.slope_limit,
            "rss_growth_mib": args.growth_limit,
            "fd_slack": FD_SLACK,
        },
        "checks": checks,
        "ok": all(checks.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--sample-s", type=float, default=2.0)
    parser.add_argument("--slope-limit", type=float, default=1.0, help="MiB/min")
    parser.add_argument("--growth-limit", type=float, default=30.0, help="MiB")
    parser.add_argument("--leak", action="store_true", help="the leaky test build: must fail")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
