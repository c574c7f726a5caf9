"""The run stream, script by script and worker step by worker step, on a real Redis: a run is
queued in the step that makes it current; ``analyze`` again is a no-op only while the run is
alive; a dead worker's run is reclaimed and finished; a stopping worker hands its runs back at
once; a heartbeat never takes a run from another worker. A dead worker here is a consumer that
read an entry and was never heard of again; its idle time is set with ``XCLAIM ... IDLE`` (what
the pending entry of a worker silent that long looks like)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from marketpulse.config import MetricDelay
from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.providers.simulated import SimulatedSource
from marketpulse.market.view import Market
from marketpulse.sessions.analysis import AnalysisEngine
from marketpulse.sessions.metrics import METRIC_NAMES
from marketpulse.sessions.portfolio import value
from marketpulse.sessions.runs import RunQueue
from marketpulse.sessions.store import SessionStore, hash_token
from marketpulse.sessions.worker import MAX_DELIVERIES, RunWorker
from support.logs import LogWatch

HOLDINGS = {"AAPL": 100.0, "GOOGL": 50.0, "MSFT": 75.0}
NOW = "2026-01-02T00:00:00.000Z"
TH = hash_token("tok")
RECLAIM_S = 2.0
DEADLINE = 10.0


@pytest.fixture
async def store(redis_boundary: RedisClient) -> SessionStore:
    s = SessionStore(redis_boundary, ttl_s=3600, run_reclaim_s=RECLAIM_S)
    await s.create("s", TH, HOLDINGS, value(HOLDINGS, {t: 1.0 for t in HOLDINGS}, 0), NOW)
    return s


@pytest.fixture
async def queue(redis_boundary: RedisClient) -> RunQueue:
    q = RunQueue(redis_boundary)
    await q.ensure_group()
    await q.ensure_group()  # idempotent
    return q


@pytest.fixture
async def engine(store: SessionStore) -> AsyncIterator[AnalysisEngine]:
    eng = AnalysisEngine(store, Market(source=SimulatedSource(seed=1)), delay=MetricDelay(0, 0))
    yield eng
    await eng.shutdown()


STREAM = keys.run_stream(keys.session_partition("s"))  # the session's partition's stream


async def _entry_of(redis: Redis) -> str:
    raw: Any = await redis.hget(keys.session("s"), "run_entry")
    return str(raw.decode())


async def _pending(redis: Redis) -> dict[str, str]:
    got: Any = await redis.xpending_range(STREAM, keys.RUN_GROUP, "-", "+", 100)
    return {p["message_id"].decode(): p["consumer"].decode() for p in got}


async def _silence(redis: Redis, entry: str, consumer: str) -> None:
    """The entry's worker has not been heard of for longer than the bound."""
    ms = int(RECLAIM_S * 1000) + 1
    await redis.xclaim(STREAM, keys.RUN_GROUP, consumer, 0, [entry], idle=ms, justid=True)


async def _finished(engine: AnalysisEngine, redis: Redis, run_id: str) -> list[str]:
    """Await the run's task on ``engine``; the run must be complete. Its stored result ids."""
    if (task := engine.runs.get("s")) is not None:  # (else it has already ended)
        await asyncio.wait_for(task, DEADLINE)
    fields: Any = await redis.hgetall(keys.session("s"))
    cur = json.loads(fields[b"current_analysis"])
    assert (cur["run_id"], cur["status"]) == (run_id, "complete")
    return [json.loads(v)["id"] for k, v in fields.items() if k.startswith(b"r:")]


async def test_a_run_is_queued_in_the_step_that_makes_it_current(
    store: SessionStore, queue: RunQueue, redis_client: Redis
) -> None:
    await store.start_analysis("s", TH, "AAPL", "r1", NOW)
    entries: Any = await redis_client.xrange(STREAM)
    assert [(e[0].decode(), e[1]) for e in entries] == [
        (await _entry_of(redis_client), {b"s": b"s", b"r": b"r1", b"t": b"AAPL"})
    ]
    (taken,) = await queue.read("w1", 10, None)
    assert (taken.run_id, taken.fresh) == ("r1", True)
    await store.start_analysis("s", TH, "MSFT", "r2", NOW)  # supersedes r1: its entry is acked
    assert await _pending(redis_client) == {}
    assert await store.resume_analysis("s", "r1", taken.entry_id) is None
    (second,) = await queue.read("w1", 10, None)
    assert second.run_id == "r2"
    assert await store.cancel_analysis("s", TH, NOW) == "r2"  # cancel acks too
    assert await _pending(redis_client) == {}


async def test_analyze_again_is_a_noop_while_alive_and_takes_over_a_dead_run(
    store: SessionStore, queue: RunQueue, redis_client: Redis
) -> None:
    await store.start_analysis("s", TH, "AAPL", "r1", NOW)
    again = await store.start_analysis("s", TH, "AAPL", "r2", NOW)
    assert again.already_running and again.run_id == "r1"  # queued, not yet taken: alive
    (taken,) = await queue.read("dead-worker", 10, None)
    again = await store.start_analysis("s", TH, "AAPL", "r2", NOW)
    assert again.already_running and again.run_id == "r1"  # taken, heartbeated: alive
    await _silence(redis_client, taken.entry_id, "dead-worker")
    async with redis_client.pubsub() as ps:
        await ps.ssubscribe(keys.session_events("s"))
        await ps.get_message(timeout=DEADLINE)
        over = await store.start_analysis("s", TH, "AAPL", "r3", NOW)
        msg = await ps.get_message(timeout=DEADLINE)
    assert over.taken_over and not over.already_running and over.run_id == "r3"
    event = json.loads(msg["data"].decode().partition("\n")[2])
    assert event == {
        "type": "analysis_restarted",
        "ticker": "AAPL",
        "run_id": "r3",
        "basis_version": over.basis_version,
        "reason": "worker_lost",
    }
    assert await _pending(redis_client) == {}  # the dead run's entry is acknowledged
    (fresh,) = await queue.read("w2", 10, None)
    assert fresh.run_id == "r3" and fresh.entry_id == await _entry_of(redis_client)


async def test_a_dead_workers_run_is_reclaimed_and_finished(
    store: SessionStore, queue: RunQueue, engine: AnalysisEngine, redis_client: Redis
) -> None:
    await store.start_analysis("s", TH, "AAPL", "r1", NOW)
    (taken,) = await queue.read("dead-worker", 10, None)
    worker = RunWorker(engine, queue, reclaim_s=RECLAIM_S, consumer="w2")
    assert await worker.reclaim_once() == 0  # not idle long enough: its worker may be alive
    await _silence(redis_client, taken.entry_id, "dead-worker")
    assert await worker.reclaim_once() == 1
    ids = await _finished(engine, redis_client, "r1")
    assert sorted(ids) == sorted(f"r1:{m}" for m in METRIC_NAMES)
    await worker.heartbeat_once()  # acknowledges the ended run
    assert await _pending(redis_client) == {}


async def test_a_stopping_worker_hands_its_run_back_at_once(
    store: SessionStore, queue: RunQueue, redis_client: Redis
) -> None:
    slow = AnalysisEngine(store, Market(source=SimulatedSource(seed=1)), delay=MetricDelay(60, 60))
    first = RunWorker(slow, queue, reclaim_s=RECLAIM_S, consumer="w1")
    await store.start_analysis("s", TH, "AAPL", "r1", NOW)
    assert await first.run_once() == 1
    old_entry = await _entry_of(redis_client)
    assert await first.hand_back() == 1
    await slow.shutdown()
    new_entry = await _entry_of(redis_client)
    assert new_entry != old_entry and await _pending(redis_client) == {}
    got: Any = await redis_client.xrange(STREAM, new_entry, new_entry)
    (raw,) = got
    assert raw[1] == {b"s": b"s", b"r": b"r1", b"t": b"AAPL", b"h": b"1"}
    fast = AnalysisEngine(store, Market(source=SimulatedSource(seed=1)), delay=MetricDelay(0, 0))
    second = RunWorker(fast, queue, reclaim_s=RECLAIM_S, consumer="w2")
    assert await second.run_once() == 1
    assert not second.hops_ms  # handed back, not fresh: its work is timed from now
    ids = await _finished(fast, redis_client, "r1")
    assert sorted(ids) == sorted(f"r1:{m}" for m in METRIC_NAMES)
    await fast.shutdown()


async def test_a_heartbeat_never_takes_a_run_from_another_worker(
    store: SessionStore, queue: RunQueue, redis_client: Redis
) -> None:
    await store.start_analysis("s", TH, "AAPL", "r1", NOW)
    (taken,) = await queue.read("w1", 10, None)
    assert await queue.heartbeat("w1", [taken.key]) == []
    await _silence(redis_client, taken.entry_id, "w1")
    (reclaimed,) = await queue.reclaim("w2", int(RECLAIM_S * 1000), 10)
    assert reclaimed.entry_id == taken.entry_id and not reclaimed.fresh
    assert await queue.heartbeat("w1", [taken.key]) == [taken.key]
    assert await _pending(redis_client) == {taken.entry_id: "w2"}


class _BrokenSource(SimulatedSource):
    """A market source with a bug in its history (we own the source)."""

    def history(self, symbol: str, tick: int, n: int) -> list[Any]:
        raise RuntimeError("a bug")


async def test_a_run_that_hits_a_bug_fails_with_a_reason_and_is_acknowledged(
    store: SessionStore, queue: RunQueue, redis_client: Redis
) -> None:
    broken = AnalysisEngine(store, Market(source=_BrokenSource(seed=1)), delay=MetricDelay(0, 0))
    worker = RunWorker(broken, queue, reclaim_s=RECLAIM_S, consumer="w1")
    await store.start_analysis("s", TH, "AAPL", "r1", NOW)
    assert await worker.run_once() == 1
    if (task := broken.runs.get("s")) is not None:  # (else it has already ended)
        await asyncio.wait_for(task, DEADLINE)
    stored: Any = await redis_client.hget(keys.session("s"), "current_analysis")
    cur = json.loads(stored)
    assert (cur["run_id"], cur["status"]) == ("r1", "failed")  # not retried forever
    await worker.heartbeat_once()
    assert await _pending(redis_client) == {}
    await broken.shutdown()


async def test_consumers_of_workers_gone_are_forgotten_once_nothing_is_pending(
    store: SessionStore, queue: RunQueue, redis_client: Redis
) -> None:
    await store.start_analysis("s", TH, "AAPL", "r1", NOW)
    (taken,) = await queue.read("busy", 10, None)
    await redis_client.xgroup_createconsumer(STREAM, keys.RUN_GROUP, "idle")
    assert await queue.prune_consumers(0) == 1  # "idle" has nothing pending: forgotten
    consumers: Any = await redis_client.xinfo_consumers(STREAM, keys.RUN_GROUP)
    assert [c["name"] for c in consumers] == [b"busy"]
    assert await _pending(redis_client) == {taken.entry_id: "busy"}


async def test_a_run_that_keeps_losing_its_workers_ends_with_worker_lost(
    store: SessionStore, queue: RunQueue, engine: AnalysisEngine, redis_client: Redis
) -> None:
    await store.start_analysis("s", TH, "AAPL", "r1", NOW)
    (taken,) = await queue.read("dead-0", 10, None)
    for i in range(1, MAX_DELIVERIES):  # each worker that took it died
        await _silence(redis_client, taken.entry_id, f"dead-{i - 1}")
        assert len(await queue.reclaim(f"dead-{i}", int(RECLAIM_S * 1000), 10)) == 1
    await _silence(redis_client, taken.entry_id, f"dead-{MAX_DELIVERIES - 1}")
    worker = RunWorker(engine, queue, reclaim_s=RECLAIM_S, consumer="w")
    assert await worker.reclaim_once() == 0
    stored: Any = await redis_client.hget(keys.session("s"), "current_analysis")
    assert json.loads(stored)["status"] == "failed"
    await worker.heartbeat_once()
    assert await _pending(redis_client) == {}


async def test_a_read_the_server_unblocks_is_retried_not_an_outage(
    store: SessionStore, queue: RunQueue, engine: AnalysisEngine, redis_client: Redis
) -> None:
    """A Redis Cluster ends a blocked ``XREADGROUP`` with ``UNBLOCKED`` on a failover (7.0);
    ``CLIENT UNBLOCK ... ERROR`` gives the same reply here. The worker logs it at INFO and reads
    again at once: no outage is logged, and a run queued afterwards is taken and finished."""
    worker = RunWorker(engine, queue, reclaim_s=RECLAIM_S, consumer="w")
    stop = asyncio.Event()
    with (
        LogWatch("marketpulse.sessions.worker", logging.INFO) as infos,
        LogWatch("marketpulse.infra.redis.outage") as outages,
    ):
        running = asyncio.ensure_future(worker.run(stop))
        try:
            async with asyncio.timeout(DEADLINE):  # one blocked read per partition
                while True:
                    clients: Any = await redis_client.client_list()
                    blocked = [c["id"] for c in clients if c.get("cmd") == "xreadgroup"]
                    if len(blocked) >= partitions.COUNT:
                        break
                    await asyncio.sleep(0.01)  # wait-ok: polls Redis's own count of blocked reads
            for client_id in blocked:
                await redis_client.execute_command(  # type: ignore[no-untyped-call]
                    "CLIENT", "UNBLOCK", client_id, "ERROR"
                )
            await infos.until(lambda: any("UNBLOCKED" in m for m in infos.messages()), DEADLINE)
            async with redis_client.pubsub() as ps:
                await ps.ssubscribe(keys.session_events("s"))
                await store.start_analysis("s", TH, "AAPL", "r1", NOW)
                async with asyncio.timeout(DEADLINE):  # taken and run to the end
                    while True:
                        msg = await ps.get_message(timeout=DEADLINE)
                        if (
                            msg
                            and msg["type"] == "smessage"
                            and b'"analysis_complete"' in msg["data"]
                        ):
                            break
            assert sorted(await _finished(engine, redis_client, "r1")) == sorted(
                f"r1:{m}" for m in METRIC_NAMES
            )
        finally:
            stop.set()
            await running
    assert worker.transient_errors >= 1
    assert outages.records == []
