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
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import websockets

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.infra.redis.outage import OutageLog
from marketpulse.sessions.metrics import METRIC_NAMES
from support.harness import serve, settings_for

DEADLINE = 30.0
OUTAGE_LOGGER = "marketpulse.infra.redis.outage"


class Records(logging.Handler):
    """Every record of the ``marketpulse`` loggers, with an awaitable arrival."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._arrived.set()

    async def until(self, found: Callable[[], bool], within: float = DEADLINE) -> None:
        async with asyncio.timeout(within):
            while not found():
                self._arrived.clear()
                await self._arrived.wait()

    def lines(self, who: str, what: str) -> list[str]:
        return [
            m
            for r in self.records
            if r.name == OUTAGE_LOGGER and (m := r.getMessage()).startswith(f"{who}: ")
            and what in m
        ]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger("marketpulse")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def _until_failed(log: OutageLog, url: str, n: int) -> None:
    """Until ``log`` has counted ``n`` failures of ``url`` (several cycles of its loop)."""
    async with asyncio.timeout(DEADLINE):
        while log.failures(url) < n:
            await asyncio.sleep(0.05)  # wait-ok: a probe of the loop's progress


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
            async with asyncio.timeout(DEADLINE):
                with pytest.raises(websockets.ConnectionClosed):
                    while True:
                        await dashboard.recv()
            assert dashboard.close_code == 1012
            for _ in range(3):
                assert (await server.http.get("/readyz")).status_code == 503
            valuation, hub = state["valuation"], state["hub"]
            await _until_failed(valuation.outage, redis.url, 5)
            await _until_failed(hub.outage, redis.url, 3)
            await records.until(lambda: bool(records.lines("run worker", "unreachable")))
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
        assert len(records.lines(who, "answers again (")) == 1, (who, _dump(records))
    assert [r for r in records.records if "run worker resumed 1 runs" in r.getMessage()]
    assert all(r.exc_info is None for r in records.records), _dump(records)
    noisy = [
        r for r in records.records if r.levelno >= logging.WARNING and r.name != OUTAGE_LOGGER
    ]
    assert not noisy, _dump(records)


def _dump(records: Records) -> str:
    return "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in records.records)

