"""A run worker: takes analysis runs from the run stream and runs them on the engine.

Guarantees (docs/contracts.md, guarantee 9):
- A run is taken only if, read atomically when it is taken, it is still its session's current
  running run (else its entry is acknowledged and skipped); it runs pinned to that basis with
  the engine's checked appends, and its entry is acknowledged only once the run has ended.
- While it runs, its pending entry is heartbeated every ``reclaim_s / 4``; a worker that dies
  stops heartbeating, and after ``reclaim_s`` any worker (this one's reclaim pass runs every
  ``reclaim_s / 2``) takes the run over and finishes it. Results already appended deduplicate
  on their ids, so the client gets each metric once.
- ``run(stop)`` ends by handing its runs back at once (re-queued for any worker), so a
  graceful shutdown costs a client one metric delay, not the reclaim bound.
- A Redis outage (guarantee 10) is logged once when it starts and once when it ends, by one
  ``OutageLog("run worker")`` for all three loops (read, heartbeat, reclaim), never with a
  stack trace. A run whose outcome the outage made unknown stays pending for this worker; the
  first read after Redis answers again takes this worker's own pending runs back (XPENDING +
  XRANGE: their delivery count is not raised, an outage is not a lost worker) and resumes them,
  so an interrupted run resumes within about ``RETRY_S`` of Redis's return, not after the
  reclaim bound. While Redis is down the read does not block, so its first success is seen at
  once.
- Runs come from every partition's stream (``sessions/runs.py``): one read loop per partition,
  each blocking at most ``BLOCK_S``, so a run queued on any partition is taken at once. An error
  reply a Redis Cluster gives in passing (``UNBLOCKED``: a blocked read ended by a failover or
  ``CLIENT UNBLOCK``; ``MOVED``/``ASK``: a slot moved; ``TTL exhausted``, ``TRYAGAIN``,
  ``CLUSTERDOWN``) is retryable: logged at INFO and the read tried again, not an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.outage import OutageLog
from marketpulse.infra.redis.stream_group import consumer_name
from marketpulse.sessions.analysis import AnalysisEngine
from marketpulse.sessions.runs import RunEntry, RunKey, RunQueue

log = logging.getLogger(__name__)

BATCH = 64  # runs per read, and the bound on concurrent resume calls of one batch
# One read waits this long for a run (cancelled at once on stop): well below redis-py 8's
# default socket timeout of 5 s, which a BLOCK of 5 s plus a round trip reached, so the idle
# worker logged a read timeout every few seconds and reconnected.
BLOCK_S = 2.0
RETRY_S = 1.0  # after a Redis error, a loop waits this long before it tries again
# A fresh run is timed from its enqueue, so the hop overlaps its modelled work, but by at most
# this much: a run that waited longer in the stream (a backlog, no worker) starts its work when
# taken, instead of appending every metric at once as if it had been computed while queued.
HOP_CREDIT_S = 0.25
# A run whose entry has been delivered this many times lost a worker each time (a crash, not a
# deploy: a handed-back run is a new entry): it ends with analysis_failed 'worker_lost' instead
# of taking down worker after worker.
MAX_DELIVERIES = 5
# error replies of a cluster in passing (a failover, a slot moving): retry, not an outage
TRANSIENT = ("UNBLOCKED", "MOVED", "ASK ", "TTL exhausted", "TRYAGAIN", "CLUSTERDOWN")
TRANSIENT_PAUSE_S = 0.05


def transient(exc: RedisUnavailable) -> bool:
    """An error reply that a retry outlives (see ``TRANSIENT``), not Redis being unreachable."""
    return any(marker in exc.message for marker in TRANSIENT)


@dataclass(slots=True)
class _Held:
    entry: RunEntry
    task: asyncio.Task[None]


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class RunWorker:
    def __init__(
        self,
        engine: AnalysisEngine,
        queue: RunQueue,
        *,
        reclaim_s: float,
        consumer: str | None = None,
        batch: int = BATCH,
        block_s: float = BLOCK_S,
    ) -> None:
        self.engine = engine
        self.queue = queue
        self.consumer = consumer or consumer_name()
        self.reclaim_ms = int(reclaim_s * 1000)
        self.heartbeat_s = reclaim_s / 4
        self.reclaim_every_s = reclaim_s / 2
        self.batch = batch
        self.block_ms = int(block_s * 1000)
        self.held: dict[RunKey, _Held] = {}  # (partition, entry id) -> the run this worker runs
        self._acks: list[RunKey] = []
        self._stopping = False
        self.taken = 0
        self.hops_ms: deque[float] = deque(maxlen=10_000)  # enqueue -> taken, fresh runs
        self.outage = OutageLog("run worker")
        self.url = queue.redis.url
        self._resume_own = False  # an outage may have left runs of ours pending, not held
        self.resumed = 0  # own runs taken back after an outage
        self.transient_errors = 0  # retryable error replies (see TRANSIENT)

    def _failed(self, exc: RedisUnavailable) -> None:
        self.outage.failed(self.url, exc)
        self._resume_own = True

    def _answered(self) -> None:
        self.outage.answered(self.url)

    async def run(self, stop: asyncio.Event) -> None:
        """Take runs until ``stop``; then hand back every run still held. Creates the stream's
        group first (idempotent), retrying while Redis does not answer."""
        while True:
            try:
                await self.queue.ensure_group()
                break
            except RedisUnavailable as exc:
                self._failed(exc)
                await _pause(stop, RETRY_S)
                if stop.is_set():
                    return
        log.info("run worker ready (consumer %s)", self.consumer)
        try:
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(self._reads(stop), name="runs:read")
                tg.create_task(self._heartbeats(stop), name="runs:heartbeat")
                tg.create_task(self._reclaims(stop), name="runs:reclaim")
                await stop.wait()
                reader.cancel()  # a blocked read: what it took is handed back below
        finally:
            await self.hand_back()

    async def run_once(self, block_ms: int | None = None) -> int:
        """One read (waiting up to ``block_ms``) and one reclaim pass; the runs taken."""
        n = await self._take_all(await self.queue.read(self.consumer, self.batch, block_ms))
        return n + await self.reclaim_once()

    async def resume_own(self) -> int:
        """Take back this worker's pending runs that it does not hold (a run whose task an
        outage ended with an unknown outcome); the runs resumed."""
        entries = await self.queue.own_pending(self.consumer, skip=set(self.held))
        n = await self._take_all(entries)
        self.resumed += n
        return n

    async def reclaim_once(self) -> int:
        """Take over the runs whose worker stopped heartbeating past the bound; forget the
        consumers of workers long gone (nothing pending, silent for 10 bounds)."""
        taken = await self._take_all(
            await self.queue.reclaim(self.consumer, self.reclaim_ms, self.batch)
        )
        await self.queue.prune_consumers(10 * self.reclaim_ms)
        return taken

    async def heartbeat_once(self) -> None:
        """Keep this worker's runs alive; stop those that are no longer its own; acknowledge
        the runs that ended since the last beat."""
        acks, self._acks = self._acks, []
        try:
            await self.queue.ack(acks)
        except RedisUnavailable:
            self._acks.extend(acks)
            raise
        ids = [key for key, h in self.held.items() if not h.task.done()]
        for i in range(0, len(ids), 500):
            for key in await self.queue.heartbeat(self.consumer, ids[i : i + 500]):
                held = self.held.get(key)
                if held is not None:  # superseded, cancelled, or taken over elsewhere
                    held.task.cancel()

    async def hand_back(self) -> int:
        """Stop every held run and give each back to the stream at once (still current ones
        are queued again for any worker; the others just acknowledged). The runs handed back."""
        self._stopping = True
        tasks = [h.task for h in self.held.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.queue.ack(self._acks)
            self._acks = []
            entries = await self.queue.own(self.consumer)
            store = self.engine.store
            handed = 0
            for i in range(0, len(entries), self.batch):
                chunk = entries[i : i + self.batch]
                got = await asyncio.gather(
                    *(store.hand_back_run(e.session_id, e.run_id, e.entry_id) for e in chunk)
                )
                handed += sum(1 for g in got if g is not None)
        except RedisUnavailable as exc:
            log.warning("runs not handed back (reclaimed after %d ms): %s", self.reclaim_ms, exc)
            return 0
        hops = sorted(self.hops_ms)
        log.info(
            "run worker stopped: %d runs taken, %d handed back; enqueue to taken p50 %.2f ms,"
            " p99 %.2f ms",
            self.taken,
            handed,
            hops[len(hops) // 2] if hops else 0.0,
            hops[min(len(hops) - 1, int(0.99 * len(hops)))] if hops else 0.0,
        )
        return handed

    async def _reads(self, stop: asyncio.Event) -> None:
        """One read loop per partition (a blocked read holds one pooled connection)."""
        async with asyncio.TaskGroup() as tg:
            for partition in self.queue.partitions:
                tg.create_task(self._read_partition(stop, partition), name=f"runs:read:{partition}")

    async def _read_partition(self, stop: asyncio.Event, partition: int) -> None:
        while not stop.is_set():
            try:
                if self._resume_own:
                    self._resume_own = False  # one loop resumes for every partition
                    try:
                        if n := await self.resume_own():
                            log.info("run worker resumed %d runs an outage interrupted", n)
                    except RedisUnavailable:
                        self._resume_own = True
                        raise
                    self._answered()
                # while Redis is down, do not block: the first read that succeeds ends it
                block = None if self.outage.down() else self.block_ms
                entries = await self.queue.read_partition(
                    partition, self.consumer, self.batch, block
                )
                self._answered()
                await self._take_all(entries)
            except RedisUnavailable as exc:
                if transient(exc):
                    self.transient_errors += 1
                    log.info("run worker: partition %d read: %s; retrying", partition, exc.message)
                    await _pause(stop, TRANSIENT_PAUSE_S)
                    continue
                self._failed(exc)
                await _pause(stop, RETRY_S)

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _pause(stop, self.heartbeat_s)
            try:
                await self.heartbeat_once()
            except RedisUnavailable as exc:
                self._failed(exc)

    async def _reclaims(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.reclaim_once()
            except RedisUnavailable as exc:
                self._failed(exc)
            await _pause(stop, self.reclaim_every_s)

    async def _take_all(self, entries: Sequence[RunEntry]) -> int:
        got = await asyncio.gather(*(self._take(e) for e in entries), return_exceptions=True)
        for g in got:  # a run not taken stays pending for this worker: reclaimed after the bound
            if isinstance(g, RedisUnavailable) and transient(g):
                self.transient_errors += 1
                self._resume_own = True  # taken back by the next read
            elif isinstance(g, RedisUnavailable):
                self._failed(g)  # taken back by the next read once Redis answers
            elif isinstance(g, BaseException):
                raise g
        return sum(1 for g in got if g is True)

    async def _take(self, entry: RunEntry) -> bool:
        if entry.key in self.held or self._stopping:
            return False
        resumed = await self.engine.store.resume_analysis(
            entry.session_id, entry.run_id, entry.entry_id
        )
        if resumed is None:  # ended, superseded or handed back meanwhile: nothing to run
            self._acks.append(entry.key)
            return False
        if resumed.deliveries > MAX_DELIVERIES:
            log.error(
                "run %s of %s lost %d workers; ending it", entry.run_id, entry.session_id,
                resumed.deliveries - 1,
            )  # fmt: skip
            await self.engine.store.fail_analysis(entry.session_id, entry.run_id, "worker_lost")
            self._acks.append(entry.key)
            return False
        loop = asyncio.get_running_loop()
        begun = loop.time()
        if entry.fresh:  # time the run from its enqueue (Redis's clock at both ends)
            hop_ms = max(0.0, float(resumed.redis_now_ms - entry.enqueued_ms))
            self.hops_ms.append(hop_ms)
            begun -= min(hop_ms / 1000, HOP_CREDIT_S)
        task = await self.engine.take(entry.session_id, entry.ticker, resumed.snapshot, begun)
        if task is None:  # the engine is shutting down: the entry is handed back
            return False
        self.taken += 1
        self.held[entry.key] = _Held(entry, task)
        task.add_done_callback(partial(self._ended, entry.key))
        return True

    def _ended(self, entry_id: RunKey, task: asyncio.Task[None]) -> None:
        """A run's task is done. Returned: the run ended (complete, failed, superseded, or
        restarted as a new queued run): acknowledge it. Cancelled: superseded or cancelled (its
        entry was acknowledged by that script), no longer ours, or stopping (handed back).
        Raised: an unknown outcome (Redis unreachable): left pending, taken back by the first
        read after Redis answers (or, if this worker dies, reclaimed after the bound)."""
        held = self.held.get(entry_id)
        if held is not None and held.task is task:
            del self.held[entry_id]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            self._acks.append(entry_id)
        elif isinstance(exc, RedisUnavailable):
            self._failed(exc)
