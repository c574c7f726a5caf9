"""The WebSocket protocol the server runs: uvicorn's sans-I/O ``websockets`` protocol, with two
additions for the hot path of analysis events.

1. **Writes coalesced per event-loop iteration.** A session's analysis ends in a burst: its
   results and ``analysis_complete`` arrive together, and each frame written alone costs a
   loopback ``send()`` (with the TCP transmit and the client's wake-up it triggers). Writes are
   gathered and flushed by a callback at the end of the iteration, in order (or at once past
   64 KiB, so the transport's flow control sees them); ``close()`` flushes first, so a close
   frame still follows the frames before it.
2. **A synchronous text send, offered as the ASGI extension ``marketpulse.send_text``.** The
   ASGI path (Starlette's checks, its exception-handling wrapper, uvicorn's ``send`` and the
   ``websockets`` frame builder) costs more than the frame itself. The extension writes one
   unfragmented, unmasked text frame (RFC 6455 5.2: a server never masks) straight to the
   transport, and answers False, sending nothing, whenever the connection is not open or its
   writes are paused by flow control; the caller then uses the ordinary ``websocket.send``.

3. **A handshake refused with an HTTP answer is complete.** uvicorn 0.54 logs "ASGI callable
   returned without completing handshake" at ERROR after a denial response (the
   ``websocket.http.response`` extension: a session socket's 503 while Redis is down) because
   it marks only an accepted handshake complete; once the answer's last body part is written
   the handshake is over, so it is marked complete too and nothing is logged.

4. **A protocol violation closes with its code and one INFO line, never a traceback.** Every
   frame the ``websockets`` parser refuses (bad opcode, unmasked, RSV bits, a control frame
   too big or fragmented, a continuation without a start, a message over ``MAX_MESSAGE``)
   closes with the parser's code (1002, 1009) and is logged once at INFO (logger
   ``marketpulse.infra.ws.protocol``); a text message that is not UTF-8 closes with 1007 the
   same way. uvicorn 0.54 logs the latter at ERROR with a traceback and, when the client's
   close frame came in the same read, raises again out of ``data_received`` (asyncio's "Fatal
   error"): it is handled here instead.
5. **A send buffer that cannot grow past a bound** (``close_now``, offered as the ASGI
   extension ``marketpulse.close_now``): a connection whose client does not read is closed
   with a code without waiting for the buffer to drain (uvicorn's ``send`` awaits it): reading
   stops at once, the close frame is queued behind what is buffered and the transport is
   aborted if that has not gone out within ``ABORT_AFTER_S``, so the buffer is freed either
   way. A client closed for flooding costs nothing more to read.

6. **An idle socket costs little** (issue 18, fan-out at scale: ``bench/bench_fanout.py``).
   uvicorn's per-connection ``asyncio.Queue`` of messages for the app (three deques, ~2.3 KB)
   and its ``writable`` ``asyncio.Event`` (a deque, ~0.8 KB) are replaced by ``_Inbox`` and
   ``_Flag``, which keep only what they hold; the handshake's request and response headers
   (~2 KB) are dropped once the answer is written; the keepalive ping waits on the loop's
   timer wheel (``infra/ws/wheel.py``: a loop timer made per ping per socket fed the garbage
   collector's oldest generation, and so its full collections).

Everything else (handshake, flow control, keepalive, size limits, close) is uvicorn's. Use
``ws_options()`` wherever a uvicorn server for this app is configured (``serve``, tests).

This subclass reads private attributes of uvicorn's protocol, so ``pyproject.toml`` pins uvicorn
to the minor version it was written against (0.54); ``tests/integration/test_ws_protocol.py`` is
the contract an upgrade must pass before the pin moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.protocol import State

from marketpulse.infra.ws.wheel import wheel

MAX_MESSAGE = 4096  # bytes; a bigger client message closes the connection with 1009
SEND_TEXT_EXTENSION = "marketpulse.send_text"
FLUSH_AT = 64 * 1024  # bytes gathered before a write goes out at once (the transport's pause)

CLOSE_NOW_EXTENSION = "marketpulse.close_now"
ABORT_AFTER_S = 5.0  # a close frame not written out by then (the client does not read): abort
PING_INTERVAL_S = 20.0  # uvicorn's defaults, named: a ping every 20 s, closed without a pong
PING_TIMEOUT_S = 20.0

SendTextNow = Callable[[str], bool]
CloseNow = Callable[[int, str], bool]
log = logging.getLogger(__name__)


def text_frame(text: str) -> bytes:
    """One final, unmasked text frame carrying ``text`` (RFC 6455 section 5.2)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def send_text_now(scope: Any) -> SendTextNow | None:
    """The connection's synchronous text send, if the server offers it."""
    send: SendTextNow | None = scope.get("extensions", {}).get(SEND_TEXT_EXTENSION)
    return send


def close_now(scope: Any) -> CloseNow | None:
    """The connection's immediate close (see the module docstring), if the server offers it."""
    close: CloseNow | None = scope.get("extensions", {}).get(CLOSE_NOW_EXTENSION)
    return close


class _CoalescingTransport:
    """A transport whose ``write`` is gathered per loop iteration; the rest is the real one's."""

    __slots__ = ("_buf", "_loop", "_real", "_size")

    def __init__(self, real: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._real = real
        self._loop = loop
        self._buf: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._buf:
            self._loop.call_soon(self._flush)
        self._buf.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT:  # past this, flow control must see the bytes now
            self._flush()

    def _flush(self) -> None:
        buf, self._buf, self._size = self._buf, [], 0
        if buf and not self._real.is_closing():
            self._real.write(b"".join(buf))

    def close(self) -> None:
        self._flush()
        self._real.close()

    def abort(self) -> None:
        self._buf.clear()
        self._real.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Inbox:
    """The part of ``asyncio.Queue`` uvicorn's protocol uses for the app's messages
    (``put_nowait``, ``get``, ``empty``; unbounded), without its three preallocated deques: a
    list of what is queued (reading pauses after each message, so it holds one or two) and
    the getters' futures while one waits."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiters, self._waiters = self._waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            fut = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(fut)
            try:
                await fut
            except BaseException:
                if self._waiters is not None and fut in self._waiters:
                    self._waiters.remove(fut)
                raise
        return self._items.pop(0)


class _Flag:
    """The part of ``asyncio.Event`` uvicorn's protocol uses for ``writable`` (``set``,
    ``clear``, ``is_set``, ``wait``), its waiters' list made only while one waits."""

    __slots__ = ("_on", "_waiters")

    def __init__(self, on: bool) -> None:
        self._on = on
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._on

    def set(self) -> None:
        self._on = True
        waiters, self._waiters = self._waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(None)

    def clear(self) -> None:
        self._on = False

    async def wait(self) -> bool:
        while not self._on:
            fut = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(fut)
            try:
                await fut
            except BaseException:
                if self._waiters is not None and fut in self._waiters:
                    self._waiters.remove(fut)
                raise
        return True


class _PingDue:
    """A connection's keepalive ping on the loop's timer wheel; ``cancel()`` as a loop timer's
    (uvicorn cancels ``ping_timer`` when it stops the keepalive)."""

    __slots__ = ("proto", "slot", "wheel")

    def __init__(self, proto: CoalescingWebSocketProtocol) -> None:
        self.proto = proto
        self.wheel = wheel()
        self.slot: int | None = None

    def due(self) -> None:
        self.proto.send_keepalive_ping()

    def cancel(self) -> None:
        self.wheel.discard(self)


class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol over a write-coalescing transport."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue: Any = _Inbox()  # see the module docstring, 6
        self.writable: Any = _Flag(self.writable.is_set())
        self._ping_due: _PingDue | None = None

    def schedule_ping(self) -> None:
        """uvicorn's, the next ping on the loop's timer wheel (``wheel.py``) instead of a loop
        timer made for each (see the module docstring, 6)."""
        assert self.ping_interval is not None
        if self._ping_due is None:
            self._ping_due = _PingDue(self)
        self._ping_due.wheel.add(self._ping_due, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = self._ping_due  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        real: Any = transport
        super().connection_made(_CoalescingTransport(real, asyncio.get_running_loop()))  # type: ignore[arg-type]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][SEND_TEXT_EXTENSION] = self.send_text_now
            scope["extensions"][CLOSE_NOW_EXTENSION] = self.close_now

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, except that a text message that is not UTF-8 closes with 1007 and one
        INFO line (see the module docstring)."""
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError:
                self.frames = []
                log.info("WebSocket %s sent invalid UTF-8; closed with 1007", self._peer())
                if self.conn.state is State.OPEN:
                    self.conn.send_close(1007, "invalid UTF-8")
                    self.handle_parser_exception()
                # else the client's close frame came first: it is answered as any close is
                return
        super().send_receive_event_to_app()

    def handle_parser_exception(self) -> None:
        """Close with the code the parser chose (or 1007 above), logged once at INFO."""
        sent = self.conn.close_sent
        if sent is not None and sent.code != 1007:
            log.info(
                "WebSocket %s violated the protocol (%s); closed with %d",
                self._peer(),
                sent.reason or "no reason",
                sent.code,
            )
        super().handle_parser_exception()

    def close_now(self, code: int, reason: str) -> bool:
        """Close with ``code`` at once, whatever the send buffer holds: nothing more is read
        from the client; the close frame goes behind what is buffered and the connection ends
        once it is out, or is aborted after ``ABORT_AFTER_S`` if the client has not read it by
        then. The app gets ``websocket.disconnect``. False if already closing."""
        if self.close_sent or self.disconnected or self.conn.state is not State.OPEN:
            return False
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        # nothing more is read from this client (a flood costs nothing past here): the
        # transport closes once the close frame is out, or is aborted
        self.transport.close()
        self.close_timer = self.loop.call_later(ABORT_AFTER_S, self.transport.abort)
        return True

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True  # answered (and closed): see the module docstring
        elif message["type"] == "websocket.accept" and self.handshake_complete:
            # the answer is written: the handshake's headers are not read again (6); the
            # request also lives on in the ``websockets`` parser's frame, so it is emptied
            self.request.headers = self.response.headers = Headers()
            self.request = self.response = None  # type: ignore[assignment]

    def send_text_now(self, text: str) -> bool:
        """Write one text frame now (coalesced with this iteration's writes); False, with
        nothing sent, unless the connection is open and writable."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
        ):
            return False
        self.transport.write(text_frame(text))
        return True


def ws_options(
    ping_interval_s: float = PING_INTERVAL_S, ping_timeout_s: float = PING_TIMEOUT_S
) -> dict[str, Any]:
    """uvicorn settings for this app's WebSockets: a ping every ``ping_interval_s``; a client
    that has not answered it within ``ping_timeout_s`` is closed (1011, as ``websockets``
    does on a keepalive timeout)."""
    return {
        "ws": CoalescingWebSocketProtocol,
        "ws_max_size": MAX_MESSAGE,
        "ws_per_message_deflate": False,
        "ws_ping_interval": ping_interval_s,
        "ws_ping_timeout": ping_timeout_s,
    }
