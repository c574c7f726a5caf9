"""Deliveries on the named channels (issue 20): one outbox consumer per channel row, at least
once per (fire, channel).

- ``ChannelDeliveries.run(stop)`` (a lifespan task) follows the rows (``CHANNELS_VERSION``,
  every ``refresh_s``) and runs one ``ChannelDelivery`` per channel: a new row starts one, a
  changed row restarts it, a deleted row stops it. Each runs on its own tasks, with its own
  consumer group (created with the row, ``channel_store.py``), reads, reclaims and per-send
  timeout, so a channel that is dead or hangs delays no other. A channel's loop that fails is
  logged and started again at the next refresh.
- ``ChannelDelivery`` is ``delivery.OutboxDelivery`` (read, send, acknowledge after sending in
  ``outbox_delivered.lua``; a failure stays pending and is retried past the reclaim bound) on
  one channel, plus: an entry of an alert that does not name the channel is acknowledged
  unsent; a back-to-normal entry is sent only if the channel asked for them; during the quiet
  hours (and always, for a digest channel without quiet hours) a fire is held
  (``channel_hold.lua``: kept and acknowledged in one step), and outside them the release pass
  (``release_held``, every ``release_every_s``, and at the end of the quiet hours) sends what
  is held, as one digest or one message each, then records the
  deliveries (``channel_released.lua``). One instance releases a channel at a time (a lock); a
  release cut short is sent again whole: at least once, same keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from marketpulse.alerts.channel_store import Held, RedisChannelStore
from marketpulse.alerts.channels import Channel, digest_message, fire_message, routed
from marketpulse.alerts.delivery import OutboxDelivery
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.outbox import AlertOutbox, OutboxEntry
from marketpulse.alerts.senders import Sender
from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.outage import OutageLog
from marketpulse.infra.redis.stream_group import consumer_name
from marketpulse.timefmt import utc_now

log = logging.getLogger(__name__)

RELEASE_EVERY_S = 30.0
RELEASE_CHUNK = 20  # held fires sent one by one per release step (then recorded)
REFRESH_S = 1.0
REGROUP_PAUSE_S = 0.2  # a loop whose row was deleted waits this long between reads


class ChannelNotifier:
    """A named channel as a ``Notifier``: a fire (or a back-to-normal entry) as its message."""

    def __init__(self, channel: Channel, sender: Sender) -> None:
        self.name = channel.name
        self.sender = sender

    async def send(self, alert: FiredAlert) -> None:
        await self.sender.send(fire_message(alert))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(seconds, 0.0))


class ChannelDelivery(OutboxDelivery):
    """One named channel's consumer of the outbox (see the module docstring)."""

    def __init__(
        self,
        outbox: AlertOutbox,
        store: RedisChannelStore,
        channel: Channel,
        sender: Sender,
        *,
        reclaim_s: float,
        max_attempts: int,
        notify_timeout_s: float = 10.0,
        now: Callable[[], datetime] = utc_now,
        release_every_s: float = RELEASE_EVERY_S,
        consumer: str | None = None,
        block_s: float = 2.0,
    ) -> None:
        super().__init__(
            outbox,
            [ChannelNotifier(channel, sender)],
            reclaim_s=reclaim_s,
            max_attempts=max_attempts,
            notify_timeout_s=notify_timeout_s,
            consumer=consumer,
            block_s=block_s,
        )
        self.store = store
        self.channel = channel
        self.sender = sender
        self.now = now
        self.release_every_s = release_every_s
        self.held_count = 0  # fires this consumer held (for tests and logs)
        self.released_count = 0  # held fires this consumer sent
        self.release_outages = OutageLog(f"channel {channel.name} release")

    async def ensure_groups(self) -> None:
        """Nothing: the group is created with the row (a deleted row's is not made again)."""

    async def _regroup(self, exc: RedisUnavailable) -> bool:
        """NOGROUP: the row was deleted (its group with it); this loop is stopped at the next
        refresh. Not an outage: wait a moment and let the caller go on."""
        if "NOGROUP" not in exc.message:
            return False
        await asyncio.sleep(REGROUP_PAUSE_S)
        return True

    def _holds(self) -> bool:
        """Whether a fire is held now: in the quiet hours, or always for a digest channel
        without quiet hours (one digest per release pass)."""
        quiet = self.channel.quiet_hours
        if quiet is None:
            return self.channel.digest
        return quiet.quiet_at(self.now())

    def wants(self, channel: str, alert: FiredAlert) -> bool:
        return routed(alert, channel, named=True, back_to_normal=self.channel.back_to_normal)

    async def _deliver_entry(self, notifier: object, channel: str, entry: OutboxEntry) -> None:
        alert = entry.alert
        if (
            alert is not None
            and entry.attempt <= self.max_attempts
            and self.wants(channel, alert)
            and self._holds()
        ):
            try:
                if await self.store.hold(channel, entry.entry_id, alert, utc_now()):
                    self.held_count += 1
                    log.info("channel %s holds fire %s for its next release", channel,
                             alert.id)  # fmt: skip
            except RedisUnavailable as exc:  # stays pending: held or sent on a later pass
                self.outages.failed(exc.url or self.outbox.url, exc)
            return
        await super()._deliver_entry(notifier, channel, entry)  # type: ignore[arg-type]

    async def run(self, stop: asyncio.Event) -> None:
        log.info("channel %s delivery ready (%s)", self.channel.name, self.channel.kind)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(super().run(stop), name=f"channel:{self.channel.name}")
                tg.create_task(self._releases(stop), name=f"release:{self.channel.name}")
        finally:
            await self.sender.close()

    async def _releases(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.release_held()
                self.release_outages.answered(self.store.url)
            except RedisUnavailable as exc:
                self.release_outages.failed(exc.url or self.store.url, exc)
            except Exception as exc:  # the far end refused: tried again at the next pass
                log.warning("channel %s could not send its held fires: %r", self.channel.name,
                            exc)  # fmt: skip
            await _pause(stop, self._next_release_s())

    def _next_release_s(self) -> float:
        quiet = self.channel.quiet_hours
        now = self.now()
        if quiet is not None and quiet.quiet_at(now):  # at the end of the quiet hours
            until = (quiet.ends_after(now) - now).total_seconds()
            return min(until + 0.5, self.release_every_s)
        return self.release_every_s

    async def release_held(self) -> int:
        """Outside the quiet hours, send what the channel holds (one digest, or one message
        each) and record it; the number of held fires sent. Raises when a send fails (what
        is held stays) or Redis does."""
        quiet = self.channel.quiet_hours
        if quiet is not None and quiet.quiet_at(self.now()):
            return 0
        name = self.channel.name
        lock_ms = int((RELEASE_CHUNK + 1) * self.timeout_s * 1000) + 10_000
        if not await self.store.lock_release(name, self.consumer, lock_ms):
            return 0
        sent = 0
        try:
            while True:
                held = await self.store.held(name)
                if not held.fires:
                    return sent
                if self.channel.digest:
                    tz = quiet.tz if quiet is not None else "UTC"
                    message = digest_message(held.fires, held.count, held.since or utc_now(), tz)
                    async with asyncio.timeout(self.timeout_s):
                        await self.sender.send(message)
                    await self.store.released(name, held, utc_now())
                    sent += len(held.fires)
                    self.released_count += len(held.fires)
                    return sent
                chunk = held.fires[:RELEASE_CHUNK]
                for fire in chunk:
                    async with asyncio.timeout(self.timeout_s):
                        await self.sender.send(fire_message(fire))
                await self.store.released(name, Held(chunk, len(chunk), held.since), utc_now())
                sent += len(chunk)
                self.released_count += len(chunk)
        finally:
            await self.store.unlock_release(name)


class ChannelDeliveries:
    """Runs one ``ChannelDelivery`` per channel row (see the module docstring)."""

    def __init__(
        self,
        outbox: AlertOutbox,
        store: RedisChannelStore,
        make_sender: Callable[[Channel], Sender],
        *,
        reclaim_s: float,
        max_attempts: int,
        notify_timeout_s: float = 10.0,
        refresh_s: float = REFRESH_S,
        on_secrets: Callable[[list[str]], None] | None = None,
        now: Callable[[], datetime] = utc_now,
        consumer: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.store = store
        self.make_sender = make_sender
        self.reclaim_s = reclaim_s
        self.max_attempts = max_attempts
        self.timeout_s = notify_timeout_s
        self.refresh_s = refresh_s
        self.on_secrets = on_secrets
        self.now = now
        self.consumer = consumer or consumer_name()
        self.outages = OutageLog("channel deliveries")
        # channel name -> its row, stop event and task: one per row (the rows are capped)
        self.running: dict[str, tuple[Channel, asyncio.Event, asyncio.Task[None]]] = {}
        self._deliveries: dict[str, ChannelDelivery] = {}  # the same channels' loops
        self._stopping: set[asyncio.Task[None]] = set()  # stopped, not yet ended
        self.changed = asyncio.Event()  # set after each refresh that changed what runs

    def delivery(self, channel: str) -> ChannelDelivery | None:
        return self._deliveries.get(channel)

    async def run(self, stop: asyncio.Event) -> None:
        version = -1
        try:
            while not stop.is_set():
                try:
                    now_version = await self.store.version()
                    if now_version != version:
                        self._reconcile({c.name: c for c in await self.store.all()})
                        version = now_version
                    self.outages.answered(self.store.url)
                except RedisUnavailable as exc:
                    self.outages.failed(exc.url or self.store.url, exc)
                self._restart_failed()
                await _pause(stop, self.refresh_s)
        finally:
            for name in list(self.running):
                self._stop(name)
            tasks = [t for _, _, t in self.running.values()] + list(self._stopping)
            await asyncio.gather(*tasks, return_exceptions=True)
            self.running.clear()
            self._deliveries.clear()

    def _reconcile(self, rows: dict[str, Channel]) -> None:
        changed = False
        for name in list(self.running):
            if rows.get(name) != self.running[name][0]:
                self._stop(name)
                changed = True
        for name, channel in rows.items():
            if self.on_secrets is not None:
                self.on_secrets(channel.secrets())
            if name not in self.running:
                self._start(channel)
                changed = True
        if changed:
            self.changed.set()

    def _start(self, channel: Channel) -> None:
        delivery = ChannelDelivery(
            self.outbox,
            self.store,
            channel,
            self.make_sender(channel),
            reclaim_s=self.reclaim_s,
            max_attempts=self.max_attempts,
            notify_timeout_s=self.timeout_s,
            now=self.now,
            consumer=self.consumer,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(delivery.run(stop), name=f"channel-delivery:{channel.name}")
        self.running[channel.name] = (channel, stop, task)
        self._deliveries[channel.name] = delivery

    def _stop(self, name: str) -> None:
        _, stop, task = self.running.pop(name)
        self._deliveries.pop(name, None)
        self.outbox.forget(name)
        stop.set()
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _restart_failed(self) -> None:
        """A channel's loop that ended with an error is logged and started again."""
        for name, (channel, _, task) in list(self.running.items()):
            if not task.done():
                continue
            exc = None if task.cancelled() else task.exception()
            log.error("channel %s delivery stopped: %r; starting it again", name, exc)
            self.running.pop(name)
            self._deliveries.pop(name, None)
            self.outbox.forget(name)
            self._start(channel)
