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

Everything else (handshake, flow control, keepalive, size limits, close) is uvicorn's. Use
``ws_options()`` wherever a uvicorn server for this app is configured (``serve``, tests).

This subclass reads private attributes of uvicorn's protocol, so ``pyproject.toml`` pins uvicorn
to the minor version it was written against (0.54); ``tests/integration/test_ws_protocol.py`` is
the contract an upgrade must pass before the pin moves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

MAX_MESSAGE = 4096  # bytes; a bigger client message closes the connection with 1009
SEND_TEXT_EXTENSION = "marketpulse.send_text"
FLUSH_AT = 64 * 1024  # bytes gathered before a write goes out at once (the transport's pause)

SendTextNow = Callable[[str], bool]


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


class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol over a write-coalescing transport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        real: Any = transport
        super().connection_made(_CoalescingTransport(real, asyncio.get_running_loop()))  # type: ignore[arg-type]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][SEND_TEXT_EXTENSION] = self.send_text_now

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True  # answered (and closed): see the module docstring

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


def ws_options() -> dict[str, Any]:
    """uvicorn settings for this app's WebSockets."""
    return {
        "ws": CoalescingWebSocketProtocol,
        "ws_max_size": MAX_MESSAGE,
        "ws_per_message_deflate": False,
    }
