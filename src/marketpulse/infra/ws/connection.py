"""How every WebSocket of the service runs one connection: its loops (receive, forwarders,
writer, watchdogs) in one task group, so that the first to end ends them all and a disconnect
leaks no task; a loop ends the connection with a close code by raising ``WsClose``. And how
each reads its client's messages (``receive_text``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from fastapi.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.http_errors import error_body, redis_unavailable_response
from marketpulse.infra.ws.limits import ConnectionCounts, MessageRate
from marketpulse.infra.ws.protocol import MAX_MESSAGE, close_now

log = logging.getLogger(__name__)


class WsClose(Exception):
    """Raised by a connection's loop: close the socket with ``code`` (and ``reason``);
    ``now``: without waiting for the client to read what is buffered (a client that floods
    or does not read), where the server offers it."""

    def __init__(self, code: int, reason: str = "", *, now: bool = False) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.now = now


async def receive_text(ws: WebSocket) -> str | None:
    """The client's next text message, or None for a binary frame (no protocol of ours has
    them; the caller answers it). Raises WebSocketDisconnect when the client has left and
    ``WsClose(1009)`` for a message over MAX_MESSAGE (with ``ws_options()`` uvicorn refuses such
    a frame itself; this holds under any server)."""
    msg = await ws.receive()
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    text: str | None = msg.get("text")
    if text is not None and len(text.encode()) > MAX_MESSAGE:
        raise WsClose(1009, "message too big")
    return text


async def run_connection(ws: WebSocket, *loops: Coroutine[Any, Any, None]) -> None:
    """Run the loops until one raises ``WsClose`` (the socket is closed with its code) or the
    client disconnects (nothing to close); any other error propagates."""
    code, reason, now = 1000, "", False
    try:
        async with asyncio.TaskGroup() as tg:
            for loop in loops:
                tg.create_task(loop)
    except* WsClose as eg:
        first = eg.exceptions[0]
        if isinstance(first, WsClose):
            code, reason, now = first.code, first.reason, first.now
    except* WebSocketDisconnect:
        code = 0  # the client left
    if code:
        await close_socket(ws, WsClose(code, reason, now=now))


async def close_socket(ws: WebSocket, close: WsClose) -> None:
    """Close an open socket with ``close``'s code: at once where the server offers it and
    ``close.now`` asks (``close_now``), else with the ASGI close (behind what is buffered).
    Nothing to do once the socket is no longer connected."""
    closer = close_now(ws.scope) if close.now else None
    if closer is not None and ws.client_state == WebSocketState.CONNECTED:
        closer(close.code, close.reason)
    elif ws.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close(code=close.code, reason=close.reason)


async def refuse_unavailable(ws: WebSocket, exc: RedisUnavailable) -> None:
    """Answer a handshake that cannot be served while Redis is unreachable: HTTP 503
    ``redis_unavailable`` with ``Retry-After`` (naming no internal address); on a server without
    the ASGI denial-response extension, a close before accept with 1013 ("try again later")."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(redis_unavailable_response(exc))
    else:
        await ws.close(code=1013)


async def refuse_limited(ws: WebSocket, reason: str) -> None:
    """Refuse a handshake past a connection limit (``infra/ws/limits.py``): HTTP 429
    ``too_many_connections`` naming the limit; without the denial-response extension, or once
    accepted, a close with 1008 and the reason."""
    extensions = ws.scope.get("extensions", {})
    if ws.client_state is WebSocketState.CONNECTING and "websocket.http.response" in extensions:
        body = error_body("too_many_connections", reason)
        await ws.send_denial_response(JSONResponse(body, status_code=429))
    else:
        await ws.close(code=1008, reason=reason)


def connection_counts(ws: WebSocket) -> ConnectionCounts:
    """The instance's socket counts and limits (``ws_counts`` of the app's lifespan state); an
    app built without them (a test's partial app) gets the default limits and a count of its
    own per socket."""
    found = ws.scope.get("state", {}).get("ws_counts")
    return found if isinstance(found, ConnectionCounts) else ConnectionCounts()


def admitted(ws: WebSocket, kind: str, session: str | None = None) -> Admission:
    """``async with admitted(ws, kind, session) as admit:`` counts this socket against its
    client address (and ``session``) while the block runs; ``admit`` is False, the handshake
    refused (``refuse_limited``, one INFO line), when a limit is reached."""
    return Admission(ws, kind, session)


class Admission:
    """``admitted``'s context manager: an object, not a generator, as its frame would live as
    long as the socket (issue 18, fan-out at scale)."""

    __slots__ = ("client", "counts", "held", "kind", "session", "ws")

    def __init__(self, ws: WebSocket, kind: str, session: str | None) -> None:
        self.ws = ws
        self.kind = kind
        self.session = session
        self.counts = connection_counts(ws)
        self.client = ws.client.host if ws.client else "unknown"
        self.held = False

    async def __aenter__(self) -> bool:
        if refused := self.counts.refusal(self.client, self.session):
            log.info("%s socket of %s refused: %s", self.kind, self.client, refused)
            await refuse_limited(self.ws, refused)
            return False
        self.counts.add(self.client, self.session)
        self.held = True
        return True

    async def __aexit__(self, *exc: object) -> None:
        if self.held:
            self.held = False
            self.counts.remove(self.client, self.session)


def message_rate(ws: WebSocket) -> MessageRate:
    """A fresh per-socket message rate under the instance's limits."""
    return MessageRate(connection_counts(ws).limits)


def over_rate(rate: MessageRate, kind: str) -> str | None:
    """Take one client message from ``rate``: None to handle it, else the message of the
    ``rate_limited`` error to answer instead; past the hard rate raises ``WsClose(1008)``
    (closed at once, one INFO line)."""
    verdict = rate.check()
    if verdict == "close":
        log.info("%s socket client sent past the hard rate limit; closing it", kind)
        raise WsClose(1008, "rate limit exceeded", now=True)
    if verdict == "limited":
        return f"at most {rate.soft.rate_per_s:g} messages per second"
    return None
