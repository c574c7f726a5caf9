"""Alert deliveries from the outbox: one consumer per channel, at least once.

Guarantees (docs/contracts.md, guarantee 11):

- Each channel (notifier) consumes the outbox through its own consumer group, so it gets every
  fire once across all instances; a channel's reads, retries and failures are its own, so one
  that fails or hangs never delays another.
- An entry is acknowledged only after its channel delivered it, in the step that records the
  delivery (``outbox_delivered.lua``). An attempt gets at most ``notify_timeout_s`` and never
  more than half the reclaim bound (so a live consumer's entry is not taken over mid-send).
- A failed delivery stays pending; any consumer's reclaim pass (every ``reclaim_s / 2``) takes
  over the entries idle past ``reclaim_s``, its own failures and a dead consumer's entries
  alike, and delivers them again. An entry past ``max_attempts`` deliveries (XPENDING's count)
  is given up: one ERROR line, then acknowledged.
- A channel sends only the fires of alerts that name it (``AlertCondition.channels``; an
  alert that names none goes to these channels, as before); any other entry is acknowledged
  unsent.
- ``run(stop)`` stops reading at once; deliveries in flight get ``shutdown_s`` to finish. What
  is not acknowledged stays pending for any consumer (reclaimed after the bound).
- A Redis outage logs one WARNING when it starts and one when it ends (``OutageLog``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from marketpulse.alerts.channels import routed
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.notifiers import Notifier
from marketpulse.alerts.outbox import AlertOutbox, OutboxEntry
from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.outage import OutageLog
from marketpulse.infra.redis.stream_group import consumer_name
from marketpulse.timefmt import utc_now

log = logging.getLogger(__name__)

BATCH = 64  # entries per read, delivered concurrently
# one read waits this long (cancelled at once on stop): below redis-py's socket timeout, as
# the run worker's (sessions/worker.py)
BLOCK_S = 2.0
RETRY_S = 1.0  # after a Redis error, a loop waits this long before it tries again
MAX_ATTEMPTS = 10


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _unless_stopped[T](work: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """``work``'s result, or (False, None) if ``stop`` is set first (``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    if task.cancelled():
        return False, None
    return True, task.result()


class OutboxDelivery:
    def __init__(
        self,
        outbox: AlertOutbox,
        notifiers: Sequence[Notifier],
        *,
        reclaim_s: float,
        max_attempts: int = MAX_ATTEMPTS,
        notify_timeout_s: float = 10.0,
        shutdown_s: float = 5.0,
        consumer: str | None = None,
        batch: int = BATCH,
        block_s: float = BLOCK_S,
    ) -> None:
        self.outbox = outbox
        self.notifiers = notifiers  # the manager's list: read when a loop starts
        self.consumer = consumer or consumer_name()
        self.reclaim_ms = int(reclaim_s * 1000)
        self.reclaim_every_s = reclaim_s / 2
        self.max_attempts = max_attempts
        self.timeout_s = min(notify_timeout_s, reclaim_s / 2)
        self.shutdown_s = shutdown_s
        self.batch = batch
        self.block_ms = int(block_s * 1000)
        self.outages = OutageLog("alert delivery")
        self.delivered = 0
        self._in_flight: dict[str, set[str]] = {}  # channel -> entry ids being delivered here

    def wants(self, channel: str, alert: FiredAlert) -> bool:
        """Whether ``channel`` sends this entry (``channels.routed``: the alert named it, or
        named no channel at all; a back-to-normal entry is for named channels only)."""
        return routed(alert, channel, named=False)

    def channels(self) -> list[str]:
        return [n.name for n in self.notifiers]

    async def ensure_groups(self) -> None:
        await self.outbox.ensure_groups(self.channels())

    # -- the loops ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver on every channel until ``stop`` (see the module docstring)."""
        while not stop.is_set():
            try:
                await self.ensure_groups()
                self.outages.answered(self.outbox.url)
                break
            except RedisUnavailable as exc:
                self.outages.failed(exc.url or self.outbox.url, exc)
                await _pause(stop, RETRY_S)
        if stop.is_set():
            return
        log.info("alert delivery ready (consumer %s; channels %s)", self.consumer,
                 ", ".join(self.channels()) or "none")  # fmt: skip
        async with asyncio.TaskGroup() as tg:
            for notifier in self.notifiers:
                tg.create_task(self._reads(notifier, stop), name=f"deliver:{notifier.name}")
                tg.create_task(self._reclaims(notifier, stop), name=f"reclaim:{notifier.name}")

    async def run_once(self, block_ms: int | None = None) -> int:
        """On every channel: read what is new (the first read waits up to ``block_ms``) until
        nothing is, and one reclaim pass, their deliveries made; the number delivered."""
        before = self.delivered
        stop = asyncio.Event()

        async def one(notifier: Notifier) -> None:
            wait = block_ms
            while True:
                read = await self.outbox.read(notifier.name, self.consumer, self.batch, wait)
                await self._deliver_all(notifier, read, stop)
                if len(read) < self.batch:
                    break
                wait = None
            await self._reclaim_once(notifier, stop)

        async with asyncio.TaskGroup() as tg:
            for notifier in self.notifiers:
                tg.create_task(one(notifier))
        return self.delivered - before

    async def _reads(self, notifier: Notifier, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                read, entries = await _unless_stopped(
                    self.outbox.read(notifier.name, self.consumer, self.batch, self.block_ms),
                    stop,
                )
            except RedisUnavailable as exc:
                if not await self._regroup(exc):
                    self.outages.failed(exc.url or self.outbox.url, exc)
                    await _pause(stop, RETRY_S)
                continue
            if not read:
                return  # stopping: what the cancelled read took stays pending
            self.outages.answered(self.outbox.url)
            await self._deliver_all(notifier, entries or [], stop)

    async def _reclaims(self, notifier: Notifier, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._reclaim_once(notifier, stop)
                self.outages.answered(self.outbox.url)
            except RedisUnavailable as exc:
                if not await self._regroup(exc):
                    self.outages.failed(exc.url or self.outbox.url, exc)
            await _pause(stop, self.reclaim_every_s)

    async def _regroup(self, exc: RedisUnavailable) -> bool:
        """After a NOGROUP error (a Redis that lost its data, a group deleted by hand): create
        the groups again (at the outbox's end). True if that worked."""
        if "NOGROUP" not in exc.message:
            return False
        try:
            await self.ensure_groups()
        except RedisUnavailable:
            return False
        log.warning("alert delivery: the outbox's consumer groups were missing; created again")
        self.outages.answered(self.outbox.url)
        return True

    async def _reclaim_once(self, notifier: Notifier, stop: asyncio.Event) -> None:
        entries = await self.outbox.reclaim(
            notifier.name, self.consumer, self.reclaim_ms, self.batch
        )
        await self._deliver_all(notifier, entries, stop)
        await self.outbox.prune_consumers(notifier.name, 10 * self.reclaim_ms)

    # -- one batch ---------------------------------------------------------------------------

    async def _deliver_all(
        self, notifier: Notifier, entries: Sequence[OutboxEntry], stop: asyncio.Event
    ) -> None:
        """Deliver ``entries`` concurrently; once ``stop`` is set they get ``shutdown_s``."""
        flying = self._in_flight.setdefault(notifier.name, set())
        mine = [e for e in entries if e.entry_id not in flying]  # reclaimed from ourselves
        if not mine:
            return
        batch: asyncio.Future[Any] = asyncio.gather(
            *(self._deliver(notifier, e, flying) for e in mine)
        )
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({batch, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not batch.done():
                await asyncio.wait({batch}, timeout=self.shutdown_s)
        finally:
            for t in (batch, stopped):
                t.cancel()
            await asyncio.gather(batch, stopped, return_exceptions=True)

    async def _deliver(self, notifier: Notifier, entry: OutboxEntry, flying: set[str]) -> None:
        channel = notifier.name
        flying.add(entry.entry_id)
        try:
            await self._deliver_entry(notifier, channel, entry)
        finally:
            flying.discard(entry.entry_id)

    async def _deliver_entry(self, notifier: Notifier, channel: str, entry: OutboxEntry) -> None:
        alert = entry.alert
        if alert is None or entry.attempt > self.max_attempts:
            what = "unreadable" if alert is None else f"fire {alert.id} ({alert.symbol})"
            log.error("alert delivery on %s gave up on %s after %d attempts (entry %s)",
                      channel, what, entry.attempt - 1, entry.entry_id)  # fmt: skip
            await self._quietly(self.outbox.give_up(channel, entry.entry_id))
            return
        if not self.wants(channel, alert):  # not this channel's: acknowledged unsent
            await self._quietly(self.outbox.give_up(channel, entry.entry_id))
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await notifier.send(alert)
        except Exception as exc:  # one delivery's failure reaches no other
            log.warning(
                "alert delivery on %s failed for fire %s (attempt %d of %d): %r; retried in"
                " about %.1f s", channel, alert.id, entry.attempt, self.max_attempts, exc,
                self.reclaim_ms / 1000,
            )  # fmt: skip
            return
        if await self._quietly(self.outbox.delivered(channel, entry, utc_now())):
            self.delivered += 1

    async def _quietly(self, op: Awaitable[None]) -> bool:
        """Run a Redis write; an outage is logged once (the entry stays pending)."""
        try:
            await op
        except RedisUnavailable as exc:
            self.outages.failed(exc.url or self.outbox.url, exc)
            return False
        self.outages.answered(self.outbox.url)
        return True
