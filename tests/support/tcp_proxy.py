"""A loopback TCP proxy between the service and Redis that misbehaves on demand (issue 11).

``TcpProxy(upstream_port)`` listens on ``127.0.0.1:<free port>`` and relays every connection to
the Redis on ``127.0.0.1:<upstream_port>``, byte for byte, both ways. A test points the service
at ``proxy.url()`` and, while it runs, injects the faults a network between the service and
Redis can produce:

- ``delay(s)``: every byte from Redis to the client is held ``s`` seconds before it is relayed
  (order kept; ``delay(0)`` ends it for new bytes, ``restore()`` also releases those held). A
  client whose read timeout is shorter sees a timeout on a connection that is still alive.
- ``drop_replies()``: from now on, bytes from Redis are swallowed while the connections stay
  open (commands still reach Redis and run): the client waits for replies that never come, so
  its timeout fires and it retries the command, possibly a second time on the server. A
  connection that lost bytes can never be used again (its reply stream has a hole, as TCP would
  never allow), so ``restore()`` ends the drop and resets every such connection.
- ``cut(refuse_s)``: resets every open connection, both ways, at once; with ``refuse_s``, new
  connections are refused (accepted and reset at once) for that long.

``stats`` counts connections and bytes; ``until(probe)`` awaits a change the probe sees (a
connection opened or closed, bytes relayed, held or swallowed). Every connection is a few tasks
owned by the proxy; ``aclose()`` (or leaving ``async with``) resets them all and awaits every
task, so a test leaks none. Loopback only: the proxy never listens on or connects to another
address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

LOOPBACK = "127.0.0.1"
CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 5.0  # to the upstream Redis: a connection that cannot be made is reset


@dataclass
class ProxyStats:
    """What the proxy has seen since it started."""

    accepted: int = 0  # connections relayed (each got an upstream connection)
    refused: int = 0  # connections reset at once (``cut(refuse_s)``, or no upstream)
    cut: int = 0  # connections reset by ``cut()``
    reset_after_drop: int = 0  # connections reset by ``restore()`` because they lost bytes
    bytes_up: int = 0  # client -> Redis, relayed
    bytes_down: int = 0  # Redis -> client, relayed
    bytes_dropped: int = 0  # Redis -> client, swallowed by ``drop_replies()``
    bytes_held: int = 0  # Redis -> client, waiting out a ``delay()`` now


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dead middlebox or a killed peer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    """One relayed connection: the client's side and the upstream side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tainted: bool = False  # bytes from Redis were swallowed: the stream has a hole
    closed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        if not self.closed:
            self.closed = True
            _reset(self.client)
            _reset(self.upstream)


class TcpProxy:
    """See the module docstring. One per test; not thread-safe."""

    def __init__(self, upstream_port: int, *, upstream_host: str = LOOPBACK) -> None:
        if upstream_host not in (LOOPBACK, "localhost"):
            raise ValueError("the proxy relays to a loopback Redis only")
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._delay_s = 0.0
        self._dropping = False
        self._refuse_until = 0.0
        self._activity = asyncio.Event()  # set on every change of the stats (``until``)
        self._released = asyncio.Event()  # set by ``restore()``: held bytes go at once

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, db: int = 0) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    async def aclose(self) -> None:
        """Stop listening, reset every connection and await every task of the proxy."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self._links):
            link.reset()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- faults ------------------------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        """Hold every byte from Redis ``seconds`` before relaying it (0: relay at once)."""
        if seconds < 0:
            raise ValueError("a delay is not negative")
        self._delay_s = seconds

    def drop_replies(self) -> None:
        """Swallow every byte from Redis from now on, connections left open (see module)."""
        self._dropping = True

    def restore(self) -> int:
        """End every fault: no delay, no drop, no refusal. Resets the connections that lost
        bytes to a drop (they cannot be used again); the number reset."""
        self._delay_s = 0.0
        self._dropping = False
        self._refuse_until = 0.0
        self._released.set()
        self._released = asyncio.Event()
        n = 0
        for link in list(self._links):
            if link.tainted and not link.closed:
                link.reset()
                n += 1
        self.stats.reset_after_drop += n
        return n

    def cut(self, refuse_s: float = 0.0) -> int:
        """Reset every open connection both ways; refuse new ones for ``refuse_s`` seconds.
        The number of connections reset."""
        if refuse_s > 0:
            self._refuse_until = asyncio.get_running_loop().time() + refuse_s
        n = 0
        for link in list(self._links):
            if not link.closed:
                link.reset()
                n += 1
        self.stats.cut += n
        return n

    # -- probes ------------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return sum(1 for link in self._links if not link.closed)

    async def until(self, probe: Callable[[], bool], within: float = 10.0) -> None:
        """Until ``probe()`` is true, re-checked at each change of the stats (a deadline)."""
        async with asyncio.timeout(within):
            while not probe():
                self._activity.clear()
                await self._activity.wait()

    def _changed(self) -> None:
        self._activity.set()

    # -- relaying ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._relay(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        if self._server is None or loop.time() < self._refuse_until:
            self.stats.refused += 1
            self._changed()
            _reset(writer)
            return
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                up_reader, up_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
        except (OSError, TimeoutError):
            self.stats.refused += 1
            self._changed()
            _reset(writer)
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        self.stats.accepted += 1
        self._changed()
        try:
            link.tasks = [
                asyncio.create_task(self._pump_up(reader, link), name="proxy:up"),
                asyncio.create_task(self._pump_down(up_reader, link), name="proxy:down"),
            ]
            # either direction ending (EOF, an error, a reset) ends the connection
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.reset()
            for t in link.tasks:
                t.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)
            self._links.discard(link)
            self._changed()

    async def _pump_up(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                link.upstream.write(data)
                self.stats.bytes_up += len(data)
                self._changed()
                await link.upstream.drain()

    async def _pump_down(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """Redis -> client, through a queue of (release time, bytes) so a delay keeps order."""
        loop = asyncio.get_running_loop()
        held: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def release() -> None:
            while (item := await held.get()) is not None:
                at, data = item
                if (wait := at - loop.time()) > 0 and not link.tainted and not self._dropping:
                    released = self._released
                    with contextlib.suppress(TimeoutError):  # the delay this fault models
                        await asyncio.wait_for(released.wait(), wait)
                self.stats.bytes_held -= len(data)
                if link.tainted or self._dropping:  # a drop began while it was held
                    self._swallow(link, data)
                    continue
                link.client.write(data)
                self.stats.bytes_down += len(data)
                self._changed()
                await link.client.drain()

        releaser = asyncio.create_task(release(), name="proxy:release")
        try:
            with contextlib.suppress(OSError):
                while data := await reader.read(CHUNK):
                    if link.tainted or self._dropping:
                        self._swallow(link, data)
                    else:
                        self.stats.bytes_held += len(data)
                        held.put_nowait((loop.time() + self._delay_s, data))
                        self._changed()
            held.put_nowait(None)  # Redis closed: relay what is held, then end
            await releaser
        finally:
            releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await releaser
            while not held.empty():  # reset with bytes still held: they are gone
                if (item := held.get_nowait()) is not None:
                    self.stats.bytes_held -= len(item[1])

    def _swallow(self, link: _Link, data: bytes) -> None:
        link.tainted = True
        self.stats.bytes_dropped += len(data)
        self._changed()
