"""One pipelined Redis connection shared by every caller of the hot path (a multiplexer).

Each call packs its command with hiredis (C), queues it with a future, and the commands queued
in one event-loop iteration go out in one write; replies are parsed by hiredis as bytes arrive
and resolve the futures in order. Against redis-py's pooled asyncio client (a pure-Python
packer, a connection checkout, a retry wrapper and a parser round per command) a call costs
this process far less (measured in the README's benchmarks), and concurrent callers share
round trips instead of connections.

Guarantees:
- Commands reach Redis in the order they were called (one connection), so a caller's writes
  are applied in call order.
- A lost connection, or no reply for ``timeout_s`` while calls wait (one watchdog timer per
  connection, not one per call), fails the calls in flight; each is retried on a fresh
  connection (``retries`` times, with backoff). Like redis-py's default retry, a retried
  write may run twice: the scripts sent through here are idempotent (see their headers).
- ``evalsha`` falls back to ``EVAL`` when the server does not know the script (a fresh server,
  a failover, ``SCRIPT FLUSH``); the script is cached again by that EVAL.
- Error replies and connection failures after the retries raise ``RedisUnavailable`` (from the
  hiredis ``ReplyError`` or the connection error): the mux is part of the Redis boundary, so
  its callers need no translation layer of their own on the hot path.

On a Redis Cluster a mux is one primary's connection (``cluster.py`` routes between them); the
instance's mux (``RedisClient.mux``) is built with a ``decide`` hook, awaited before its first
call, which asks the server whether it is a cluster node and, if so, sets ``cluster``: every
call then goes to the ``ClusterMux``. On one server the hook runs once and the hot path pays
one attribute test for it (``divert``).

Not thread-safe; one mux per event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import hiredis
from redis.asyncio import Redis

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.endpoint import Arg, Endpoint, pack
from marketpulse.infra.retry import Backoff

# full jitter under 20 ms, 40 ms, ... capped at 0.5 s: redis-py's default, 10 ms * 2**failures
RETRY_BACKOFF = Backoff(base_s=0.02, cap_s=0.5)
# A bulk connection's paced commands in flight at once: Redis runs everything a connection sent
# before it serves another client, so a sweep keeps only this many of its script calls (each
# under a millisecond of Redis's time) queued on a server (``send_many``, ``send``)
BULK_WINDOW = 4
ASKING = pack(("ASKING",))


class Diverted(Protocol):
    """Where the calls of a mux go once the server turned out to be a cluster node."""

    async def execute(self, *args: Arg) -> Any: ...

    async def evalsha(
        self, sha: str, source: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any: ...


class _Wire(asyncio.Protocol):
    """One connection: writes coalesced per loop iteration, replies matched to futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.out: list[bytes] = []
        self.closed = False
        self.progress_at = loop.time()  # the last reply, or when the queue stopped being empty
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise ConnectionError("redis connection closed")
        fut = self.loop.create_future()
        if not self.waiting:
            self.progress_at = self.loop.time()
            if self._watchdog is None:
                self._watchdog = self.loop.call_later(self._check_every, self._watch)
        self.waiting.append(fut)
        if not self.out:
            self.loop.call_soon(self._flush)
        self.out.append(packed)
        return fut

    def _flush(self) -> None:
        out, self.out = self.out, []
        if out and not self.closed and self.transport is not None:
            self.transport.write(b"".join(out))

    @property
    def _check_every(self) -> float:
        return min(1.0, self.timeout_s / 4)

    def _watch(self) -> None:
        """One timer per connection, not one per call: no reply for ``timeout_s`` while calls
        wait means a stuck connection; abort it so they retry on a fresh one."""
        self._watchdog = None
        if self.closed or not self.waiting:
            return
        if self.loop.time() - self.progress_at > self.timeout_s:
            self.abort(ConnectionError(f"redis did not reply within {self.timeout_s:g}s"))
            return
        self._watchdog = self.loop.call_later(self._check_every, self._watch)

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self.waiting
        self.progress_at = self.loop.time()
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                fut = waiting.popleft()
                if not fut.done():
                    fut.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # a corrupt stream: drop it
            self.abort(ConnectionError(f"redis protocol error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"redis connection lost: {exc or 'closed'}"))

    def abort(self, exc: Exception) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self.out.clear()
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: a queued call whose caller stopped waiting is quiet


class RedisMux:
    """A multiplexed connection for hot-path commands; ``aclose()`` it when done."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        window: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.window = None if window is None else asyncio.Semaphore(window)  # send_many's
        self.url = endpoint.display()  # named by its errors, never the credentials
        self.timeout_s = timeout_s
        self.retries = retries
        self._wire: _Wire | None = None
        self._connecting: asyncio.Future[_Wire] | None = None
        self._closed = False
        # set by RedisClient: until ``decide`` has run (and for good on a cluster), calls take
        # the slow path through ``_diverted``
        self.divert = False
        self.decide: Callable[[], Awaitable[None]] | None = None
        self.cluster: Diverted | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def abort(self) -> None:
        """Close now: calls in flight fail (and are retried by their router), none may start."""
        self._closed = True
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.abort(ConnectionError("redis connection closed: the node left the slot map"))

    @classmethod
    def for_client(cls, redis: Redis, **kw: Any) -> RedisMux:
        """A mux to the same server, database and credentials as a redis-py client."""
        return cls(Endpoint.of(redis), **kw)

    async def aclose(self) -> None:
        self._closed = True
        wire, self._wire = self._wire, None
        if wire is not None and wire.transport is not None:
            wire.transport.close()

    async def _connected(self) -> _Wire:
        wire = self._wire
        if wire is not None and not wire.closed:
            return wire
        if self._closed:
            raise RedisUnavailable("the redis connection is closed", url=self.url)
        if self._connecting is None:  # one connect for every caller waiting on it
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _connect(self) -> _Wire:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout_s):
            wire = await self.endpoint.open(lambda: _Wire(loop, self.timeout_s))
            login = self.endpoint.login()
            for reply in await asyncio.gather(*(wire.send(pack(cmd)) for cmd in login)):
                if isinstance(reply, hiredis.ReplyError):
                    wire.abort(ConnectionError(str(reply)))
                    raise RedisUnavailable(
                        f"redis refused the connection setup: {reply}", url=self.url
                    )
        self._wire = wire
        return wire

    async def execute(self, *args: Arg) -> Any:
        """Send one command; its reply (bytes, int, list, None). Raises RedisUnavailable on an
        error reply and when the connection fails after the retries."""
        if self.divert:
            return await self._diverted(None, args)
        reply = await self._send(pack(args))
        if isinstance(reply, hiredis.ReplyError):
            raise RedisUnavailable(f"redis {args[0]!s}: {reply}", url=self.url) from reply
        return reply

    async def evalsha(self, sha: str, source: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a Lua script by its SHA1, loading it with EVAL when the server lacks it."""
        if self.divert:
            return await self._diverted((sha, source, keys), args)
        reply = await self._send(pack(("EVALSHA", sha, len(keys), *keys, *args)))
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._send(pack(("EVAL", source, len(keys), *keys, *args)))
        if isinstance(reply, hiredis.ReplyError):  # a bug, or a server out of memory
            raise RedisUnavailable(f"redis script {sha[:12]}: {reply}", url=self.url) from reply
        return reply

    async def _diverted(
        self, script: tuple[str, str, Sequence[str]] | None, args: Sequence[Arg]
    ) -> Any:
        """A call before the topology is known, or on a cluster."""
        if self.cluster is None and self.decide is not None:
            await self.decide()  # raises RedisUnavailable when the server cannot be asked
        cluster = self.cluster
        if cluster is None:
            self.divert = False  # one server: the plain path from now on
            if script is None:
                return await self.execute(*args)
            return await self.evalsha(*script, args)
        if script is None:
            return await cluster.execute(*args)
        return await cluster.evalsha(*script, args)

    async def send(self, packed: bytes, *, asking: bool = False, paced: bool = False) -> Any:
        """The reply to one packed command, an error reply returned as is (a cluster router's
        call). With ``asking``, ``ASKING`` goes first in the same write. ``paced``: waits for
        a place in the ``window`` first (as ``send_many``'s paced commands do)."""
        if paced and self.window is not None:
            async with self.window:
                return await self._send_one(packed, asking)
        return await self._send_one(packed, asking)

    async def _send_one(self, packed: bytes, asking: bool) -> Any:
        if not asking:
            return await self._send(packed)
        try:
            wire = await self._connected()
            wire.send(ASKING)  # its +OK resolves a future nobody awaits
            return await wire.send(packed)
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"redis: {exc}", url=self.url) from exc

    def _slot_free(self, _fut: asyncio.Future[Any]) -> None:
        assert self.window is not None
        self.window.release()

    async def send_many(self, packed: Sequence[bytes], *, paced: bool = False) -> list[Any]:
        """The replies to ``packed`` commands, written in order in one write and read in order
        (an error reply returned as is): a bulk caller's pipeline. ``paced`` (commands that
        each hold Redis for a while, like a script over many keys) with a ``window``: at most
        that many paced commands of this mux wait for their reply at once, the next written as
        a reply comes in. Redis reads everything a connection has sent in one go and runs it
        before it serves another client. A lost or silent connection
        fails them all, and they are all sent again, in order, on a fresh one (``retries``
        times, with backoff). Raises ``RedisUnavailable`` past the retries."""
        attempt = 0
        while True:
            try:
                wire = await self._connected()
                if self.window is None or not paced:
                    futures = [wire.send(p) for p in packed]
                else:
                    futures = []
                    for p in packed:
                        await self.window.acquire()
                        if wire.closed:
                            self.window.release()
                            raise ConnectionError("redis connection lost")
                        fut = wire.send(p)
                        fut.add_done_callback(self._slot_free)
                        futures.append(fut)
                if futures:
                    await asyncio.wait(futures)
                for fut in futures:  # an error reply is a result; a lost connection raises
                    if (exc := fut.exception()) is not None:
                        raise exc
                return [fut.result() for fut in futures]
            except (ConnectionError, OSError, TimeoutError) as exc:
                attempt += 1
                if attempt > self.retries or self._closed:
                    raise RedisUnavailable(f"redis: {exc}", url=self.url) from exc
                await asyncio.sleep(RETRY_BACKOFF.delay(attempt))

    async def _send(self, packed: bytes) -> Any:
        """The reply to ``packed``, retried on a fresh connection when one fails."""
        attempt = 0
        while True:
            try:
                wire = await self._connected()
                return await wire.send(packed)  # the wire's watchdog bounds the wait
            except (ConnectionError, OSError, TimeoutError) as exc:
                attempt += 1
                if attempt > self.retries or self._closed:
                    raise RedisUnavailable(f"redis: {exc}", url=self.url) from exc
                await asyncio.sleep(RETRY_BACKOFF.delay(attempt))
