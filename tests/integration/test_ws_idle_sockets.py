"""An idle session socket costs the server no task of its own (issue 18, fan-out at scale;
``bench/bench_fanout.py`` measures the bytes): the server's own task for the connection runs
the receive loop, events and alerts come through the hub's sinks, the writer exists only while
a send waits, and the expiry watch is a timer. The sockets still answer and still stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import marketpulse.sessions.ws as session_ws
from support.harness import Server, serve, settings_for

HOLDINGS = {"AAPL": 100, "MSFT": 75}
SOCKETS = 6


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[Server]:
    async with serve(settings_for(redis_url, metric_delay="0.05")) as s:
        yield s


def _session_socket_tasks() -> list[asyncio.Task[object]]:
    """Tasks running a coroutine of ``sessions/ws.py`` (the old design kept five per socket)."""
    here = Path(session_ws.__file__).resolve()
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and Path(code.co_filename).resolve() == here:
            found.append(task)
    return found


def _connection_tasks() -> int:
    """The server's own tasks, one per open WebSocket (uvicorn's ``run_asgi``)."""
    return sum(
        1
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "").endswith("Protocol.run_asgi")
    )


async def test_idle_session_sockets_hold_no_task_of_their_own_and_still_serve(
    server: Server,
) -> None:
    before = _connection_tasks()
    clients = []
    for _ in range(SOCKETS):
        sid, token, _ = await server.create_session(HOLDINGS)
        clients.append(await server.connect(sid, token))
    # the expiry watch's first check is a short task: idle means once it has answered
    deadline = time.monotonic() + 10
    while _session_socket_tasks():
        assert time.monotonic() < deadline, _session_socket_tasks()
        await asyncio.sleep(0.01)  # wait-ok: the probe's period
    assert _connection_tasks() - before == SOCKETS
    for c in clients:  # idle, yet each still answers and streams
        await c.send({"action": "ping"})
        await c.next("pong")
    await clients[0].send({"action": "analyze", "ticker": "AAPL"})
    await clients[0].next("analysis_complete")
    assert len(clients[0].of("analysis_result")) == 5
    for c in clients:
        await c.close()
