"""One Redis pub/sub connection per instance, fanned out to in-process subscribers.

Events arrive in the order Redis committed them (they are PUBLISHed inside the committing
script, and one subscriber connection receives a channel's messages in publish order), so every
local subscriber of a channel sees them in commit order. ``subscribe()`` returns only after Redis
confirmed the subscription: a caller that reads a snapshot afterwards misses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000  # a subscriber this far behind is dropped rather than growing memory


class Subscription:
    """A local queue of one channel's messages (raw bytes payloads)."""

    def __init__(self, hub: EventHub, channel: str) -> None:
        self.hub = hub
        self.channel = channel
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def deliver(self, data: bytes | None) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("subscriber of %s overflowed; closing it", self.channel)
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def get(self) -> bytes | None:
        """Next payload; None when the hub stopped or this subscriber overflowed."""
        return await self.queue.get()


class EventHub:
    """Owns the pub/sub connection and its reader task (run it in the lifespan task group)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pubsub: PubSub = redis.pubsub(ignore_subscribe_messages=False)
        self._subs: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._confirm: dict[str, list[asyncio.Future[None]]] = defaultdict(list)
        self._lock = asyncio.Lock()
        self._has_subs = asyncio.Event()
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Read the pub/sub connection until ``stop``; reconnects and resubscribes on errors."""
        reader = asyncio.ensure_future(self._read_forever())
        waiter = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (reader, waiter):
                t.cancel()
            for t in (reader, waiter):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            self._closed = True
            for subs in self._subs.values():
                for s in subs:
                    s.deliver(None)
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read_forever(self) -> None:
        backoff = 0.05
        while True:
            if not self._pubsub.subscribed:
                # get_message returns at once when nothing is subscribed: wait for a subscribe
                self._has_subs.clear()
                await self._has_subs.wait()
                continue
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except RedisError as exc:
                # redis-py reconnects and resubscribes on the next read; wait a little first
                log.warning("pub/sub connection lost (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            if msg is not None:
                self._dispatch(msg)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
        if kind == "message":
            for s in tuple(self._subs.get(channel, ())):
                s.deliver(msg["data"])
        elif kind == "subscribe":
            for fut in self._confirm.pop(channel, []):
                if not fut.done():
                    fut.set_result(None)

    async def subscribe(self, channel: str, timeout_s: float = 5.0) -> Subscription:
        sub = Subscription(self, channel)
        async with self._lock:
            first = not self._subs[channel]
            self._subs[channel].add(sub)
            if first:
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._confirm[channel].append(fut)
                await self._pubsub.subscribe(channel)
                self._has_subs.set()
        if first:
            try:
                async with asyncio.timeout(timeout_s):
                    await fut
            except BaseException:
                await self.unsubscribe(sub)
                raise
        else:
            # another subscriber asked first: wait until Redis confirmed it
            pending = self._confirm.get(channel)
            if pending:
                async with asyncio.timeout(timeout_s):
                    await asyncio.gather(*[asyncio.shield(f) for f in pending])
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        async with self._lock:
            subs = self._subs.get(sub.channel)
            if subs is None:
                return
            subs.discard(sub)
            if not subs:
                del self._subs[sub.channel]
                if not self._closed:
                    await self._pubsub.unsubscribe(sub.channel)

    @contextlib.asynccontextmanager
    async def subscription(self, channel: str) -> AsyncIterator[Subscription]:
        sub = await self.subscribe(channel)
        try:
            yield sub
        finally:
            await self.unsubscribe(sub)
