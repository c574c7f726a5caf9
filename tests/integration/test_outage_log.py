"""Guarantee 10 in one process: over a Redis outage every loop of the service logs one warning
when it starts and one when it ends, with no stack trace; the open sockets close with 1012;
``/readyz`` answers 503 meanwhile; a run the outage interrupted is resumed once Redis answers,
long before the reclaim bound.

A durable redis-server of the test's own is stopped and started again on the same port and
data (the app is served in-process by ``support.harness.serve``, its records seen by a handler
the test awaits). The market is frozen (replay, step 0) so the frequent revaluations never move
the basis under the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
import websockets

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.sessions.metrics import METRIC_NAMES
from support.harness import serve, settings_for
from support.logs import LogWatch

DEADLINE = 30.0
OUTAGE_LOGGER = "marketpulse.infra.redis.outage"


class Records(LogWatch):
    """Every record of the ``marketpulse`` loggers at INFO and above, with an awaitable
    arrival, and the outage log's lines by loop."""

    def __init__(self) -> None:
        super().__init__("marketpulse", logging.INFO)

    def seen(self, who: str, what: str) -> bool:
        return bool(self.lines(who, what))

    def lines(self, who: str, what: str) -> list[str]:
        return [
            m
            for r in self.records
            if r.name == OUTAGE_LOGGER
            and (m := r.getMessage()).startswith(f"{who}: ")
            and what in m
        ]


@pytest.fixture
def records() -> Iterator[Records]:
    with Records() as handler:
        yield handler


async def _close_code(ws: Any) -> int | None:
    """Read until the server closes ``ws``; its close code."""
    async with asyncio.timeout(DEADLINE):
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await ws.recv()
    return cast(int | None, ws.close_code)


async def test_each_loop_logs_an_outage_once_and_its_end_once_and_the_run_resumes(
    tmp_path: Path, records: Records
) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", durable=True)
    redis.start()
    settings = settings_for(
        redis.url,
        data_source="replay",
        replay_step=0,
        market_interval=0.2,
        metric_delay="1.5",
        run_reclaim_s=600.0,  # only the resume after the outage can finish the run in time
    )
    try:
        async with serve(settings) as server:
            state = server.state
            sid, token, _ = await server.create_session({"AAPL": 10, "MSFT": 5})
            c = await server.connect(sid, token)
            dashboard = await websockets.connect(f"{server.ws_base}/ws/dashboard")
            await dashboard.recv()  # the system frame: connected
            await c.send({"action": "analyze", "ticker": "AAPL"})
            started = await c.next("analysis_started")
            took = state["engine"].took
            await asyncio.wait_for(took.wait(), DEADLINE)  # taken: its metrics are 1.5 s away
            run = state["engine"].runs[sid]

            redis.stop()
            assert await asyncio.wait_for(c.closed, DEADLINE) == 1012
            assert await _close_code(dashboard) == 1012
            for _ in range(3):  # many probes, one line
                assert (await server.http.get("/readyz")).status_code == 503
            for _ in range(3):  # many sweeps, one line (besides the loop's own)
                await state["valuation"].cycle()
            for who in ("run worker", "pub/sub", "valuation", "readiness"):
                await records.until(partial(records.seen, who, "is unreachable"))
            # the run's first metric was due during the outage: its append failed
            await asyncio.wait({run}, timeout=DEADLINE)
            assert isinstance(run.exception(), RedisUnavailable)

            redis.start()  # same port, same data (the AOF)
            loops = ("run worker", "pub/sub", "valuation", "readiness")
            assert (await server.http.get("/readyz")).status_code == 200
            await records.until(lambda: all(records.lines(w, "answers again (") for w in loops))

            again = await server.connect(sid, token)  # waits for the hub to be back
            snap = again.log[0]["state"]
            if snap["current_analysis"]["status"] == "running":
                done = await again.next("analysis_complete", within=DEADLINE)
                assert done["run_id"] == started["run_id"]
            got = await server.http.get(
                f"/api/sessions/{sid}", headers={"Authorization": f"Bearer {token}"}
            )
            final = got.json()
            assert final["current_analysis"]["status"] == "complete"
            ids = [r["id"] for r in final["analysis_results"]]
            assert sorted(ids) == sorted(f"{started['run_id']}:{m}" for m in METRIC_NAMES)
            await again.close()
            await dashboard.close()
    finally:
        redis.stop()

    for who in loops:
        assert len(records.lines(who, "is unreachable")) == 1, (who, _dump(records))
        [back] = records.lines(who, "answers again (")
        failures = re.search(r"\((\d+) failed operations meanwhile\)", back)
        assert failures is not None
        assert int(failures[1]) >= (3 if who in ("valuation", "readiness") else 1), back
    assert [r for r in records.records if "run worker resumed 1 runs" in r.getMessage()]
    assert all(r.exc_info is None for r in records.records), _dump(records)
    noisy = [r for r in records.records if r.levelno >= logging.WARNING and r.name != OUTAGE_LOGGER]
    assert not noisy, _dump(records)


def _dump(records: Records) -> str:
    return "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in records.records)


async def test_a_session_socket_whose_redis_call_fails_after_the_accept_closes_1012(
    own_redis: EmbeddedRedis, records: Records
) -> None:
    """The expiry watch's PTTL refused by Redis (an ACL: an error reply, as a failed call is):
    the socket closes with 1012, not with an unhandled error in the ASGI application."""
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(records)
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        async with serve(settings_for(own_redis.url)) as server:
            sid, token, _ = await server.create_session({"AAPL": 10})
            await admin.execute_command("ACL", "SETUSER", "default", "-pttl")  # type: ignore[no-untyped-call]
            c = await server.connect(sid, token)  # the snapshot, then the watch's first PTTL
            assert await asyncio.wait_for(c.closed, DEADLINE) == 1012
            await admin.execute_command("ACL", "SETUSER", "default", "+pttl")  # type: ignore[no-untyped-call]
            again = await server.connect(sid, token)
            await again.send({"action": "ping"})
            await again.next("pong")
            await again.close()
    finally:
        uvicorn_log.removeHandler(records)
        await admin.aclose()
    assert all(r.exc_info is None for r in records.records), _dump(records)
    assert not [r for r in records.records if r.levelno >= logging.ERROR], _dump(records)
