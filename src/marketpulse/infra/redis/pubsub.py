"""One Redis pub/sub connection per instance, fanned out to in-process subscribers.

Events arrive in the order Redis committed them (they are published inside the committing
script, and one subscriber connection receives a channel's messages in publish order), so every
local subscriber of a channel sees them in commit order.

Two kinds of channel share the connection: a session's event channel is sharded
(``keys.sharded_channel``: the scripts ``SPUBLISH`` it on the session's slot; the hub
``SSUBSCRIBE``s, receives ``smessage`` pushes and ``SUNSUBSCRIBE``s), the alerts' and quotes'
channels are classic (``SUBSCRIBE``, ``message``). Which connection serves a channel is one
method, ``_wire_for``: on a standalone server the one connection; a cluster transport gives the
connection of the primary that owns the channel's slot (one per shard keeps a session's events
in commit order). A ``sunsubscribe`` push the hub did not ask for (a cluster moved the slot away
or lost its node) ends that channel's subscribers as a lost connection would (1012: reconnect).

``subscribe()`` returns only after Redis confirmed the subscription: a caller that reads a
snapshot afterwards misses nothing.

The connection speaks RESP itself (an asyncio protocol with hiredis parsing every push as it
arrives and handing it to the subscribers' queues synchronously): redis-py's ``PubSub`` costs a
read timeout and a parser round per message, the bulk of a burst of analysis events.

If the connection drops, messages published meanwhile are lost to this instance, so every
subscriber is ended (its ``get()`` answers None; a WebSocket closes with 1012 and its client
reconnects to a fresh snapshot) and the hub reconnects with backoff for new subscribers. The
loss and the failed reconnects are one outage, logged once when it starts and once when the
hub is connected again (``OutageLog("pub/sub")``), never with a stack trace.
A connection that stays open but stops answering (a partition, a dead middlebox: no reset ever
arrives) would starve its subscribers silently, so the hub PINGs it every ``liveness_s / 2``
and treats ``liveness_s`` without a byte from Redis as a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import hiredis
from redis.asyncio import Redis

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.endpoint import Arg, Endpoint, pack
from marketpulse.infra.redis.outage import OutageLog
from marketpulse.infra.retry import Backoff

log = logging.getLogger(__name__)

RECONNECT = Backoff(base_s=0.05, cap_s=2.0, jitter=False)  # 50 ms doubling to 2 s, exact
QUEUE_LIMIT = 10_000  # a subscriber this far behind is dropped rather than growing memory


Sink = Callable[[bytes | None], None]


class Subscription:
    """One channel's messages (raw bytes payloads) for one local subscriber: queued for
    ``get()``, or, with a ``sink``, handed to it synchronously as they arrive (None = ended;
    such a subscription has no queue: one per idle socket was three deques, ~2.3 KB)."""

    __slots__ = ("channel", "hub", "overflowed", "queue", "sink")

    def __init__(self, hub: EventHub, channel: str, sink: Sink | None = None) -> None:
        self.hub = hub
        self.channel = channel
        self.sink = sink
        self.queue: asyncio.Queue[bytes | None] | None = (
            asyncio.Queue(QUEUE_LIMIT) if sink is None else None
        )
        self.overflowed = False

    def deliver(self, data: bytes | None) -> None:
        if self.sink is not None:
            try:
                self.sink(data)
            except Exception:  # a subscriber's bug must not stop the hub's connection
                log.exception("subscriber of %s failed on a message", self.channel)
            return
        assert self.queue is not None
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("subscriber of %s overflowed; closing it", self.channel)
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def get(self) -> bytes | None:
        """Next payload; None when the hub stopped, lost its connection, or this subscriber
        overflowed. Not for a subscription with a sink."""
        assert self.queue is not None, "a subscription with a sink has no queue"
        return await self.queue.get()


class _SubscriberWire(asyncio.Protocol):
    """The pub/sub connection: pushes go to the hub, login replies to their futures."""

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.login: deque[asyncio.Future[Any]] = deque()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.heard_at = self.loop.time()  # the last byte from Redis

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def write(self, *command: Arg) -> None:
        if self.transport is not None and not self.lost.done():
            self.transport.write(pack(command))

    def command(self, *command: Arg) -> asyncio.Future[Any]:
        fut = self.loop.create_future()
        self.login.append(fut)
        self.write(*command)
        return fut

    def data_received(self, data: bytes) -> None:
        self.heard_at = self.loop.time()
        self.reader.feed(data)
        hub = self.hub
        while (reply := self.reader.gets()) is not False:
            if isinstance(reply, list) and len(reply) == 3:
                kind = reply[0]
                if kind == b"message" or kind == b"smessage":
                    hub.on_message(reply[1], reply[2])
                elif kind == b"subscribe" or kind == b"ssubscribe":
                    hub.on_subscribed(reply[1])
                elif kind == b"sunsubscribe":
                    hub.on_sunsubscribed(reply[1])
                continue  # classic unsubscribe confirmations need nothing
            if self.login:
                fut = self.login.popleft()
                if not fut.done():
                    fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        while self.login:
            fut = self.login.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError("redis pub/sub connection lost"))


class EventHub:
    """Owns the pub/sub connection (run it in the lifespan task group)."""

    def __init__(
        self, redis: Redis, *, connect_timeout_s: float = 5.0, liveness_s: float = 5.0
    ) -> None:
        self.endpoint = Endpoint.of(redis)
        self.url = self.endpoint.display()  # named by its errors, never the credentials
        self.connect_timeout_s = connect_timeout_s
        self.liveness_s = liveness_s  # silent this long (PINGed meanwhile): lost
        self._subs: defaultdict[bytes, set[Subscription]] = defaultdict(set)
        self._confirm: dict[bytes, list[asyncio.Future[None]]] = defaultdict(list)
        self._leaving: dict[bytes, int] = {}  # SUNSUBSCRIBEs sent, not yet confirmed
        self._wire: _SubscriberWire | None = None
        self._up = asyncio.Event()
        self._closed = False
        self.outage = OutageLog("pub/sub")

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the connection up until ``stop``; on a loss end every subscriber, reconnect."""
        failures = 0
        waiter: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    wire = await self._connect()
                except (OSError, TimeoutError, RedisUnavailable) as exc:
                    self.outage.failed(self.url, exc)
                    failures += 1
                    await asyncio.wait({waiter}, timeout=RECONNECT.delay(failures))
                    continue
                failures = 0
                self.outage.answered(self.url)
                self._wire = wire
                self._up.set()
                await self._until_lost(wire, waiter)
                self._up.clear()
                self._wire = None
                if wire.transport is not None:
                    wire.transport.close()
                if not stop.is_set():
                    n = self.subscriber_count
                    self.outage.failed(
                        self.url, ConnectionError(f"connection lost, {n} subscribers ended")
                    )
                self._end_all()
        finally:
            self._closed = True
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
            self._end_all()

    async def _until_lost(self, wire: _SubscriberWire, stop: asyncio.Future[Any]) -> None:
        """Until ``stop`` or the connection is lost; a quiet connection is PINGed, and one
        silent for ``liveness_s`` is aborted (lost: its subscribers may have missed messages)."""
        lost: asyncio.Future[Any] = wire.lost
        while True:
            done, _ = await asyncio.wait(
                {stop, lost}, timeout=self.liveness_s / 2, return_when=asyncio.FIRST_COMPLETED
            )
            if done:
                return
            if wire.loop.time() - wire.heard_at > self.liveness_s:
                if wire.transport is not None:
                    wire.transport.abort()
                return
            wire.write("PING")  # answered even while subscribed; any reply counts as heard

    async def _connect(self) -> _SubscriberWire:
        async with asyncio.timeout(self.connect_timeout_s):
            wire = await self.endpoint.open(lambda: _SubscriberWire(self))
            for cmd in self.endpoint.login(select_db=False):  # channels span databases
                reply = await wire.command(*cmd)
                if isinstance(reply, hiredis.ReplyError):
                    if wire.transport is not None:
                        wire.transport.close()
                    raise RedisUnavailable(
                        f"redis refused the pub/sub login: {reply}", url=self.url
                    )
            # up only once Redis answers: a dying server's socket can still accept a
            # connection (then drop it), and one loading its data answers -LOADING
            reply = await wire.command("PING")
            if isinstance(reply, hiredis.ReplyError):
                if wire.transport is not None:
                    wire.transport.close()
                raise RedisUnavailable(f"redis is not serving yet: {reply}", url=self.url)
        return wire

    def _end_all(self) -> None:
        subs, self._subs = self._subs, defaultdict(set)
        confirm, self._confirm = self._confirm, defaultdict(list)
        self._leaving = {}
        for group in subs.values():
            for s in group:
                s.deliver(None)
        for futs in confirm.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(
                        RedisUnavailable("the pub/sub connection was lost", url=self.url)
                    )
                    fut.exception()  # retrieved here: the subscriber waiting raises it

    def on_message(self, channel: bytes, data: bytes) -> None:
        for s in self._subs.get(channel, ()):
            s.deliver(data)

    def on_subscribed(self, channel: bytes) -> None:
        for fut in self._confirm.pop(channel, ()):
            if not fut.done():
                fut.set_result(None)

    def on_sunsubscribed(self, channel: bytes) -> None:
        """A sharded channel is no longer subscribed: the confirmation of our SUNSUBSCRIBE, or
        the server dropping it (its slot moved, its node failed over): then the channel's
        subscribers may miss events and are ended, as on a lost connection."""
        leaving = self._leaving.get(channel, 0)
        if leaving:
            if leaving == 1:
                del self._leaving[channel]
            else:
                self._leaving[channel] = leaving - 1
            return
        subs = self._subs.pop(channel, set())
        for fut in self._confirm.pop(channel, ()):
            if not fut.done():
                fut.set_exception(
                    RedisUnavailable("the shard dropped the subscription", url=self.url)
                )
                fut.exception()
        log.info("pub/sub: %s dropped by the server; %d subscribers ended", channel, len(subs))
        for sub in subs:
            sub.deliver(None)

    def _wire_for(self, channel: bytes) -> _SubscriberWire | None:
        """The connection that serves ``channel``: the one connection of a standalone server
        (a cluster transport would pick the primary owning the channel's slot)."""
        return self._wire

    async def subscribe(
        self, channel: str, timeout_s: float = 5.0, sink: Sink | None = None
    ) -> Subscription:
        """A subscription whose messages start no later than this call's return (handed to
        ``sink``, if given, from the hub's connection callback: it must not block). Raises
        ``RedisUnavailable`` when the hub has stopped, or is not up and confirmed within
        ``timeout_s``."""
        if self._closed:
            raise RedisUnavailable("the event hub has stopped", url=self.url)
        try:
            return await self._subscribe(channel, timeout_s, sink)
        except TimeoutError as exc:
            raise RedisUnavailable(
                f"no pub/sub subscription within {timeout_s:g}s", url=self.url
            ) from exc

    async def _subscribe(self, channel: str, timeout_s: float, sink: Sink | None) -> Subscription:
        async with asyncio.timeout(timeout_s):
            await self._up.wait()
            key = channel.encode()
            wire = self._wire_for(key)
            assert wire is not None
            sub = Subscription(self, channel, sink)
            first = not self._subs[key]
            self._subs[key].add(sub)
            if first:
                self._confirm[key].append(asyncio.get_running_loop().create_future())
                wire.write("SSUBSCRIBE" if keys.sharded_channel(key) else "SUBSCRIBE", key)
            pending = list(self._confirm.get(key, ()))
            try:
                if pending:
                    await asyncio.gather(*(asyncio.shield(f) for f in pending))
            except BaseException:
                self.unsubscribe_now(sub)
                raise
        return sub

    def unsubscribe_now(self, sub: Subscription) -> None:
        key = sub.channel.encode()
        subs = self._subs.get(key)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[key]
            wire = self._wire_for(key)
            if wire is not None and not self._closed:
                if keys.sharded_channel(key):
                    self._leaving[key] = self._leaving.get(key, 0) + 1
                    wire.write("SUNSUBSCRIBE", key)
                else:
                    wire.write("UNSUBSCRIBE", key)

    @contextlib.asynccontextmanager
    async def subscription(
        self, channel: str, sink: Sink | None = None
    ) -> AsyncIterator[Subscription]:
        sub = await self.subscribe(channel, sink=sink)
        try:
            yield sub
        finally:
            self.unsubscribe_now(sub)
