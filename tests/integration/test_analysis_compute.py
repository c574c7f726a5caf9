"""The analysis engine's computation worker: the CPU work of starting runs (every result of a
run, computed up front) is done one item per event-loop iteration, so I/O that becomes ready
meanwhile is not queued behind a whole burst of computations; an item with time to spare waits
while new items keep arriving, but not past its deadline; a cancelled caller's item is skipped;
a failure reaches its caller; shutdown stops the worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest

from marketpulse.config import MetricDelay
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.view import Market
from marketpulse.sessions.analysis import COMPUTE_LEAD_S, COMPUTE_QUIET_S, AnalysisEngine
from marketpulse.sessions.store import SessionStore

DEADLINE = 10.0


@asynccontextmanager
async def _engine(
    redis_boundary: RedisClient,
    compute_quiet_s: float = COMPUTE_QUIET_S,
    compute_lead_s: float = COMPUTE_LEAD_S,
) -> AsyncIterator[AnalysisEngine]:
    store = SessionStore(redis_boundary, ttl_s=60)
    market = Market(source=SimulatedSource(seed=1))
    eng = AnalysisEngine(
        store,
        market,
        delay=MetricDelay(0.0, 0.0),
        compute_quiet_s=compute_quiet_s,
        compute_lead_s=compute_lead_s,
    )
    try:
        yield eng
    finally:
        await eng.shutdown()


@pytest.fixture
async def engine(redis_boundary: RedisClient) -> AsyncIterator[AnalysisEngine]:
    async with _engine(redis_boundary) as eng:
        yield eng


async def test_ready_callbacks_run_between_computations(engine: AnalysisEngine) -> None:
    order: list[str] = []

    def work(name: str) -> str:
        order.append(name)
        return name

    async with asyncio.timeout(DEADLINE):
        pending = [asyncio.ensure_future(engine.compute(partial(work, n))) for n in "abcd"]
        await asyncio.sleep(0)  # wait-ok: lets the four callers queue their work
        asyncio.get_running_loop().call_soon(order.append, "io")  # I/O that became ready
        assert await asyncio.gather(*pending) == list("abcd")
    assert order.index("io") <= 1  # not after the whole burst: the worker yields per item


async def test_a_cancelled_callers_item_is_skipped_and_the_rest_run(
    engine: AnalysisEngine,
) -> None:
    ran: list[str] = []
    async with asyncio.timeout(DEADLINE):

        def one(name: str, value: int) -> int:
            ran.append(name)
            return value

        first = asyncio.ensure_future(engine.compute(partial(one, "first", 1)))
        second = asyncio.ensure_future(engine.compute(partial(one, "second", 2)))
        await asyncio.sleep(0)  # wait-ok: both queued, the worker not yet past its first yield
        first.cancel()
        assert await second == 2
    assert ran == ["second"]
    assert first.cancelled()


async def test_a_failing_computation_raises_in_its_caller_and_the_worker_goes_on(
    engine: AnalysisEngine,
) -> None:
    def boom() -> int:
        raise ValueError("non-finite metric")

    async with asyncio.timeout(DEADLINE):
        with pytest.raises(ValueError, match="non-finite"):
            await engine.compute(boom)
        assert await engine.compute(lambda: 7) == 7


async def test_shutdown_stops_the_worker(engine: AnalysisEngine) -> None:
    gate = asyncio.Event()
    async with asyncio.timeout(DEADLINE):
        waiting = asyncio.ensure_future(engine.compute(gate.is_set))
        await asyncio.sleep(0)  # wait-ok: the worker has started
        await engine.shutdown()
        assert engine._worker is None
        with pytest.raises(asyncio.CancelledError):  # not left waiting on a worker that is gone
            await waiting


async def test_an_item_with_time_to_spare_waits_while_a_burst_is_still_arriving(
    redis_boundary: RedisClient,
) -> None:
    loop = asyncio.get_running_loop()
    ran: list[int] = []

    def first() -> int:
        ran.append(0)
        return 0

    # the quiet it waits for is far longer than the gap between the burst's items below
    async with _engine(redis_boundary, compute_quiet_s=0.5, compute_lead_s=0.0) as eng:
        async with asyncio.timeout(DEADLINE):
            far = loop.time() + 60.0
            pending = [asyncio.ensure_future(eng.compute(first, by=far))]
            for n in range(1, 50):  # a burst: one more item every loop iteration
                await asyncio.sleep(0)  # wait-ok: one loop iteration between arrivals
                pending.append(asyncio.ensure_future(eng.compute(partial(int, n), by=far)))
                assert ran == []  # nothing computed while items keep arriving
            last_arrival = loop.time()
            assert await asyncio.gather(*pending) == list(range(50))
            assert loop.time() >= last_arrival + 0.5 - 1e-6  # computed in the quiet after it


async def test_an_item_waits_no_later_than_its_deadline_less_the_lead(
    redis_boundary: RedisClient,
) -> None:
    loop = asyncio.get_running_loop()
    # never quiet long enough: only the deadline releases it
    async with _engine(redis_boundary, compute_quiet_s=60.0, compute_lead_s=0.1) as eng:
        async with asyncio.timeout(DEADLINE):
            by = loop.time() + 0.3
            at = await eng.compute(loop.time, by=by)
    assert at >= by - 0.1 - 1e-6  # held until its latest start (timers never fire early)
