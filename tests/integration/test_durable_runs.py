"""Guarantee 9 with real processes: the service (or a ``marketpulse worker``) killed mid-run and
another one finishing the run. A client gets every metric of the run it ends up following,
each once, and the session is never left ``running``.

Each test starts ``python -m marketpulse serve`` (and workers) as subprocesses on the suite's
redis-server, with a short metric delay and reclaim bound; readiness is a log line, then
``/readyz``; every wait is for a message under a deadline.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.embedded import free_port
from marketpulse.sessions.metrics import METRIC_NAMES
from support.harness import Client
from support.processes import Proc, start_serve, start_worker

HOLDINGS = {"AAPL": 100, "GOOGL": 50, "MSFT": 75}
DEADLINE = 30.0


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "MARKETPULSE_REDIS_URL": redis_url,
        "MARKETPULSE_METRIC_DELAY": "0.6-1.2",
        "MARKETPULSE_MARKET_INTERVAL": "3600",
        "MARKETPULSE_RUN_RECLAIM_S": "2",
        "MARKETPULSE_LOG_LEVEL": "INFO",
        **extra,
    }


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "processes.log"


async def _session(base: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        r = await http.post("/api/sessions", json={"holdings": HOLDINGS})
        assert r.status_code == 201, r.text
        return r.json()["session_id"], r.json()["token"]


async def _connect(port: int, sid: str, token: str) -> Client:
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/sessions/{sid}?token={token}")
    client = Client(ws)
    client.start()
    await client.next("session", within=DEADLINE)
    return client


async def _state(base: str, sid: str, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        r = await http.get(f"/api/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        state: dict[str, Any] = r.json()
        return state


def _received(*clients: Client) -> list[dict[str, Any]]:
    """Every result the clients were given, in a connect snapshot or live. A client of a run
    (``clients`` are its connections, in order) never gets a result twice."""
    seen: dict[str, dict[str, Any]] = {}
    for c in clients:
        for r in c.log[0]["state"]["analysis_results"]:
            seen[r["id"]] = r
    live = [m for c in clients for m in c.of("analysis_result")]
    ids = [m["id"] for m in live]
    assert len(ids) == len(set(ids)), "a result reached the client twice"
    for c in clients:  # nothing sent live that this connection's snapshot already held
        held = {r["id"] for r in c.log[0]["state"]["analysis_results"]}
        assert not held & {m["id"] for m in c.of("analysis_result")}
    seen.update({m["id"]: m for m in live})
    return list(seen.values())


async def _follow_to_complete(client: Client) -> str:
    """The run id of the next ``analysis_complete`` (the run the client ends up following)."""
    done = await client.next("analysis_complete", within=DEADLINE)
    return str(done["run_id"])


def _assert_once_each(run_id: str, *clients: Client) -> None:
    got = [r["metric"] for r in _received(*clients) if r["run_id"] == run_id]
    assert sorted(got) == sorted(METRIC_NAMES), [c.log for c in clients]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_service_killed_mid_run_then_restarted_finishes_the_run(
    redis_url: str, log_path: Path, procs: list[Proc], sig: int
) -> None:
    port = free_port()
    # SIGTERM hands the run back at once: a reclaim bound of a minute would show if it did not
    env = _env(redis_url, MARKETPULSE_RUN_RECLAIM_S="2" if sig == signal.SIGKILL else "60")
    base = f"http://127.0.0.1:{port}"
    first = await start_serve(env, port, log_path)
    procs.append(first)
    sid, token = await _session(base)
    c1 = await _connect(port, sid, token)
    await c1.send({"action": "analyze", "ticker": "AAPL"})
    started = await c1.next("analysis_started", within=DEADLINE)
    await c1.next("analysis_result", within=DEADLINE)  # mid-run: one metric in, four to go
    killed_at = time.time()
    await first.kill(sig)
    await c1.closed
    second = await start_serve(env, port, log_path)
    procs.append(second)
    restarted_at = time.time()  # a moment after it was ready
    state = await _state(base, sid, token)
    assert state["current_analysis"]["run_id"] == started["run_id"]
    c2 = await _connect(port, sid, token)
    await c2.send({"action": "analyze", "ticker": "AAPL"})
    run_id = await _follow_to_complete(c2)
    reasons = [m["reason"] for m in c2.of("analysis_restarted")]
    how = f"restarted {reasons}" if reasons else "resumed"
    before = {m["id"] for m in c1.of("analysis_result")}
    after = [r for r in _received(c1, c2) if r["run_id"] == run_id and r["id"] not in before]
    first_at = min(datetime.fromisoformat(r["timestamp"]).timestamp() for r in after)
    print(
        f"{signal.Signals(sig).name}: run {how}; first metric after the restart "
        f"{first_at - restarted_at:.2f} s after the new service was ready "
        f"({first_at - killed_at:.2f} s after the kill)"
    )
    _assert_once_each(run_id, c1, c2)
    state = await _state(base, sid, token)
    assert state["current_analysis"]["status"] == "complete"
    assert state["current_analysis"]["run_id"] == run_id
    await c2.close()


async def test_a_worker_killed_mid_run_is_finished_by_another(
    redis_url: str, log_path: Path, procs: list[Proc], redis_client: Redis
) -> None:
    port = free_port()
    env = _env(redis_url)
    web = await start_serve({**env, "MARKETPULSE_WORKERS_IN_PROCESS": "false"}, port, log_path)
    procs.append(web)
    workers = [await start_worker(env, log_path) for _ in range(2)]
    procs.extend(workers)
    sid, token = await _session(f"http://127.0.0.1:{port}")
    c = await _connect(port, sid, token)
    await c.send({"action": "analyze", "ticker": "AAPL"})
    started = await c.next("analysis_started", within=DEADLINE)
    await c.next("analysis_result", within=DEADLINE)
    stream = keys.run_stream(keys.session_partition(sid))
    pending: Any = await redis_client.xpending_range(stream, keys.RUN_GROUP, "-", "+", 10)
    assert len(pending) == 1
    owner = pending[0]["consumer"].decode()
    victim = next(w for w in workers if f":{w.pid}:" in owner)
    await victim.kill(signal.SIGKILL)
    run_id = await _follow_to_complete(c)
    assert run_id == started["run_id"]  # the same run, finished by the other worker
    _assert_once_each(run_id, c)
    raw: Any = await redis_client.hget(keys.session(sid), "current_analysis")
    assert json.loads(raw)["status"] == "complete"
    await c.close()


async def test_two_instances_the_one_running_the_analysis_killed(
    redis_url: str, log_path: Path, procs: list[Proc], redis_client: Redis
) -> None:
    env = _env(redis_url)
    ports = [free_port(), free_port()]
    instances = [await start_serve(env, port, log_path) for port in ports]
    procs.extend(instances)
    sid, token = await _session(f"http://127.0.0.1:{ports[0]}")
    c1 = await _connect(ports[0], sid, token)
    await c1.send({"action": "analyze", "ticker": "AAPL"})
    await c1.next("analysis_result", within=DEADLINE)
    stream = keys.run_stream(keys.session_partition(sid))
    pending: Any = await redis_client.xpending_range(stream, keys.RUN_GROUP, "-", "+", 10)
    owner = pending[0]["consumer"].decode()
    victim = next(i for i, p in enumerate(instances) if f":{p.pid}:" in owner)
    await instances[victim].kill(signal.SIGKILL)
    survivor = ports[1 - victim]
    c2 = await _connect(survivor, sid, token)
    await c2.send({"action": "analyze", "ticker": "AAPL"})  # never answered with a dead run
    run_id = await _follow_to_complete(c2)
    if victim == 0:  # c1 died with its instance: c2 is the same client, reconnected
        _assert_once_each(run_id, c1, c2)
    else:  # c1 lives on the survivor: two clients, each given every metric once
        _assert_once_each(run_id, c1)
        _assert_once_each(run_id, c2)
        await c1.close()
    state = await _state(f"http://127.0.0.1:{survivor}", sid, token)
    assert (state["current_analysis"]["run_id"], state["current_analysis"]["status"]) == (
        run_id,
        "complete",
    )
    await c2.close()
