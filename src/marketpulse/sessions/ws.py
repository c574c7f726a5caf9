"""WebSocket ``/ws/sessions/{id}``: a session's events in commit order, and its actions.

The token comes as the subprotocol ``marketpulse.token.<token>`` (``socket_auth.py``) or, from
older clients, as ``?token=`` (a URL is logged, redacted; a header is not).

Per connection: refuse a foreign Origin or a bad token at the handshake; subscribe to the
session's channel (confirmed by Redis) *before* reading the snapshot, send the snapshot, then
forward only events committed after it (each carries its version): the hub hands them to
``on_event`` as they arrive, which sends each at once when the socket takes it and nothing is
queued ahead of it, else queues it for a writer task that lives only while something waits.
An idle socket holds no task of its own and no queue (issue 18, fan-out at scale; the README's
Benchmarks, ``bench_fanout.py``): the receive loop runs in the server's task for the
connection, alerts come through a sink as events do, and the expiry watch is a timer. A close
that a callback decides goes out behind what is unsent (or at once, for a client that does
not read), and the client's disconnect ends the receive loop. A bad message gets an ``error``
and the connection stays open; a message over 4 KiB closes with 1009; an expired or deleted
session closes with 4404. The limits (docs/contracts.md, "Limits"): past the soft message
rate a message is answered ``rate_limited``, past the hard one the socket closes with 1008; a
client that leaves more than the send buffer unread closes with 1008 at once; a handshake past
the per-session or per-address socket count is answered 429. Redis failing after the accept
(the expiry watch or an action: the outcome is unknown) closes with 1012, as the hub's loss
does: the client reconnects to a fresh snapshot, which says what committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect, WebSocketState

from marketpulse.errors import (
    MarketPulseError,
    NotInPortfolio,
    RedisUnavailable,
    SessionNotFound,
)
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.pubsub import QUEUE_LIMIT, Sink
from marketpulse.infra.ws.connection import (
    WsClose,
    admitted,
    close_socket,
    message_rate,
    over_rate,
    receive_text,
    refuse_unavailable,
)
from marketpulse.infra.ws.limits import WsLimits
from marketpulse.infra.ws.origins import origin_allowed
from marketpulse.infra.ws.protocol import close_now, send_text_now
from marketpulse.infra.ws.wheel import wheel
from marketpulse.market.symbols import SYMBOL_RULE, normalize_symbol
from marketpulse.sessions.analysis import AnalysisEngine
from marketpulse.sessions.http import sessions_state
from marketpulse.sessions.portfolio import SESSION_ID_RE
from marketpulse.sessions.socket_auth import chosen_protocol, offered_token
from marketpulse.sessions.store import SessionStore, hash_token
from marketpulse.timefmt import iso_z, utc_now

log = logging.getLogger(__name__)
router = APIRouter()

CLOSE_GONE = 4404
_compact = json.JSONEncoder(separators=(",", ":")).encode  # as compact as the events from Redis


def _type_of(item: dict[str, Any] | str) -> str:
    """The message type, without parsing the JSON the scripts built (it starts with it)."""
    if isinstance(item, dict):
        return str(item.get("type"))
    head = item[: item.find('"', 9)] if item.startswith('{"type":"') else ""
    return head[9:] or "unknown"


class _AlertMemo:
    """The last fired alert as a session socket sends it, and its symbol. The hub hands the
    same payload to every session socket of the instance, so it is parsed and encoded once,
    not once per socket (10,000 sockets: 10,000 parses in one callback). Holds one alert."""

    __slots__ = ("owner", "raw", "symbol", "text")

    def __init__(self) -> None:
        self.raw: bytes | None = None
        self.symbol: str | None = None
        self.owner: str | None = None
        self.text = ""

    def of(self, raw: bytes) -> tuple[str | None, str | None, str]:
        """``(symbol, owner, text)`` of the alert ``raw``: symbol None when it is not an alert;
        owner the session of a portfolio alert's fire (sent only to that session's sockets, as
        ``portfolio_alert``), else None (a price alert: to sessions holding the symbol)."""
        if raw is not self.raw:
            self.raw, self.symbol, self.owner, self.text = raw, None, None, ""
            try:
                alert = json.loads(raw)
            except ValueError:
                alert = None
            if isinstance(alert, dict) and isinstance(alert.get("symbol"), str):
                self.symbol = alert["symbol"]
                owner = alert.get("session_id")
                self.owner = owner if isinstance(owner, str) else None
                kind = "alert" if self.owner is None else "portfolio_alert"
                alert.pop("type", None)
                self.text = _compact({"type": kind, **alert})  # the type first, as events
        return self.symbol, self.owner, self.text


_ALERTS = _AlertMemo()


def error_msg(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


PATH_PREFIX = "/ws/sessions/"


def direct_session_id(scope: Scope) -> str | None:
    """The session id when ``scope`` is the handshake of a session socket (the route's path:
    one segment after ``/ws/sessions/``), else None."""
    if scope["type"] != "websocket":
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith(PATH_PREFIX):
        return None
    sid = path[len(PATH_PREFIX) :]
    return sid if sid and "/" not in sid else None


async def direct_session_socket(scope: Scope, receive: Receive, send: Send, sid: str) -> None:
    """The session socket's endpoint called straight from the app (``app.py``), past the HTTP
    middleware (which passes WebSockets through), the router and FastAPI's per-request exit
    stacks: each of their frames would live as long as the socket (~10 KB of an idle one;
    issue 18, fan-out at scale). The same endpoint as the route's, the token from the same
    query parameter."""
    ws = WebSocket(scope, receive, send)
    await session_socket(ws, sid, ws.query_params.get("token", ""))


@router.websocket("/ws/sessions/{session_id}")
async def session_socket(ws: WebSocket, session_id: str, token: str = "") -> None:
    """While Redis or the instance's pub/sub connection cannot be reached, the handshake is
    answered HTTP 503 ``{"error": {"code": "redis_unavailable", ...}}`` with ``Retry-After``
    (on a server without the ASGI denial-response extension: closed before accept with 1013,
    "try again later"). The answer names no internal address."""
    try:
        await _session_socket(ws, session_id, token)
    except RedisUnavailable as exc:
        if ws.client_state is not WebSocketState.CONNECTING:
            raise  # after the accept: the connection's own close handling applies
        log.info("session socket refused: %s", exc.message)
        await refuse_unavailable(ws, exc)


async def _session_socket(ws: WebSocket, session_id: str, token: str) -> None:
    edge = sessions_state(ws)
    store = edge["store"]
    offered: list[str] = ws.scope.get("subprotocols", [])
    token = offered_token(offered) or token  # the subprotocol wins over ?token=
    th = hash_token(token)
    if not origin_allowed(ws) or not SESSION_ID_RE.fullmatch(session_id) or not token:
        await ws.close(code=1008)
        return
    if not await store.verify(session_id, th):
        await ws.close(code=1008)
        return
    async with admitted(ws, "session", session_id) as admit:
        if admit:
            await _serve(ws, session_id, th, chosen_protocol(offered))  # never the token's


async def _serve(ws: WebSocket, session_id: str, th: str, subprotocol: str | None) -> None:
    edge = sessions_state(ws)
    store, hub = edge["store"], edge["hub"]
    conn = _Connection(ws, session_id, th)
    telemetry = edge["telemetry"]
    # subscribed (confirmed by Redis) before the snapshot is read: nothing committed after it
    # is missed; no context manager frames kept per socket, a try/finally each
    events = await hub.subscribe(keys.session_events(session_id), sink=conn.on_event)
    try:
        alerts = await hub.subscribe(keys.ALERT_EVENTS, sink=conn.on_alert)
        try:
            try:
                state = await store.read(session_id, th, iso_z(utc_now()))
            except SessionNotFound:
                await ws.close(code=1008)
                return
            await ws.accept(subprotocol=subprotocol)
            conn.begin(state)
            del state  # what the snapshot was parsed into is not kept for the connection's life
            telemetry.client_connected("session")
            try:
                await conn.serve()
            finally:
                telemetry.client_disconnected("session")
        finally:
            hub.unsubscribe_now(alerts)
    finally:
        hub.unsubscribe_now(events)


Item = tuple[str, str] | WsClose  # (type, text) to send, or the close that ends the stream


class _Connection:
    """One session socket. While it is idle it holds no task and no queue: the receive loop
    runs in the server's own task for the connection; events and alerts are handed to
    ``on_event`` / ``on_alert`` by the hub and sent at once; the writer task and its deque exist
    only while a send could not go at once (flow control), and the expiry watch is a timer
    whose check runs as a short task. The keepalive pings are the server's timers."""

    __slots__ = (
        "check",
        "early",
        "ended",
        "engine",
        "held",
        "limits",
        "out",
        "queued_bytes",
        "rate",
        "seen_version",
        "send_now",
        "sid",
        "slot",
        "store",
        "telemetry",
        "th",
        "timers",
        "writer",
        "ws",
    )

    def __init__(self, ws: WebSocket, session_id: str, token_hash: str) -> None:
        self.ws = ws
        self.sid = session_id
        self.th = token_hash
        state = sessions_state(ws)
        self.store: SessionStore = state["store"]
        self.engine: AnalysisEngine = state["engine"]
        self.limits: WsLimits = state["ws_counts"].limits
        self.telemetry = state["telemetry"]
        self.out: deque[Item] | None = None  # what waits for the writer, created when needed
        self.queued_bytes = 0  # of the texts in ``out``: bounded by limits.send_buffer
        self.writer: asyncio.Task[None] | None = None  # alive while ``out`` is being sent
        # events and alerts that came before the snapshot was sent, with their sink
        self.early: list[tuple[Sink, bytes | None]] | None = []
        self.seen_version = 0
        self.ended = False  # the event stream ended (a close is decided)
        self.held: set[str] = set()
        self.rate = message_rate(ws)
        self.send_now = send_text_now(ws.scope)
        self.timers = wheel()  # the expiry watch's timer: an entry on the loop's wheel
        self.slot: int | None = None  # its slot there while one is pending
        self.check: asyncio.Task[None] | None = None

    def begin(self, state: dict[str, Any]) -> None:
        """Send the snapshot, then what arrived meanwhile that it does not hold."""
        self.held = set(state["holdings"])
        self._emit({"type": "session", "state": state})
        self.seen_version = int(state["version"])
        early, self.early = self.early, None
        for sink, raw in early or ():
            sink(raw)

    async def serve(self) -> None:
        """The receive loop, until the client leaves or a close is decided."""
        self.due()  # the first check now, then a timer
        close: WsClose | None = None
        try:
            await self._receive()
        except WsClose as exc:
            close = exc
        except RedisUnavailable as exc:
            log.debug("session socket closed, Redis failed: %s", exc.message)
            close = WsClose(1012, "redis unavailable")
        except WebSocketDisconnect:
            pass  # the client left, or a close this connection decided went out
        finally:
            self.ended = True
            self._stop()
        if close is not None:
            await close_socket(self.ws, close)

    def _stop(self) -> None:
        self.timers.discard(self)
        for task in (self.check, self.writer):
            if task is not None:
                task.cancel()

    def _emit(self, item: dict[str, Any] | str) -> None:
        """Send ``item`` at once when nothing waits ahead of it and the socket takes it
        synchronously (the usual case: no task, no queue); otherwise queue it for the writer,
        which keeps the order. A client that leaves more than ``limits.send_buffer`` bytes
        queued (it does not read) is closed with 1008 at once."""
        if self.ended:
            return
        text = item if isinstance(item, str) else _compact(item)
        if self.send_now is not None and self.writer is None:
            started = time.perf_counter()
            if self.send_now(text):
                self._sent(_type_of(item), started)
                return
        if self.queued_bytes + len(text) > self.limits.send_buffer:
            log.info(
                "session %s client left %d bytes unread; closing it",
                self.sid,
                self.queued_bytes + len(text),
            )
            self._end(WsClose(1008, "too slow", now=True))
            return
        self.queued_bytes += len(text)
        self._enqueue((_type_of(item), text))

    def _enqueue(self, item: Item) -> None:
        if self.out is None:
            self.out = deque()
        self.out.append(item)
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write(self.out))

    async def _write(self, out: deque[Item]) -> None:
        """Send what ``out`` holds, in order, then end (the next send that cannot go at once
        starts another writer); a close in ``out`` is sent after what precedes it."""
        try:
            while out:
                item = out.popleft()
                if isinstance(item, WsClose):
                    out.clear()
                    await close_socket(self.ws, item)
                    return
                kind, text = item
                self.queued_bytes -= len(text)
                started = time.perf_counter()
                if self.send_now is None or not self.send_now(text):
                    await self.ws.send_text(text)
                self._sent(kind, started)
        except (WebSocketDisconnect, OSError):
            return  # the client left: the receive loop sees it too
        finally:
            self.writer = None
            if not out:
                self.out = None  # an idle socket keeps no deque

    def _sent(self, kind: str, started: float) -> None:
        self.telemetry.ws_message("out", kind, time.perf_counter() - started)

    def on_event(self, raw: bytes | None) -> None:
        """The session channel's sink, called by the hub as each event arrives (commit order):
        events the snapshot already holds are skipped, the rest sent or queued in order; the
        end of the stream closes behind what is unsent (1012: the hub lost Redis; 4404: the
        session is gone), or at once (1008: this client fell too far behind)."""
        if self.early is not None:
            self.early.append((self.on_event, raw))
            return
        if self.ended:
            return
        if raw is None:
            self._end(WsClose(1012))
            return
        head, _, body = raw.partition(b"\n")
        if body.startswith(b'{"type":"__gone"'):
            self._end(WsClose(CLOSE_GONE, "session gone"))
            return
        if int(head) <= self.seen_version:
            return  # already in the snapshot we sent
        if self.out is not None and len(self.out) >= QUEUE_LIMIT:
            log.warning("session %s client too far behind; closing it", self.sid)
            self._end(WsClose(1008, "too slow", now=True))
            return
        text = body.decode()
        if body.startswith(b'{"type":"portfolio_update"'):
            self.held = set(json.loads(text)["prices"])
        self._emit(text)

    def on_alert(self, raw: bytes | None) -> None:
        """The alert channel's sink: a fired alert on a symbol the session holds is sent. Its
        end (the hub lost Redis) needs nothing here: the session channel's end closes."""
        if self.early is not None:
            self.early.append((self.on_alert, raw))
            return
        if raw is None or self.ended:
            return
        symbol, owner, text = _ALERTS.of(raw)
        if owner is not None:  # a portfolio alert's fire: only to its own session
            if owner == self.sid:
                self._emit(text)
        elif symbol is not None and symbol in self.held:
            self._emit(text)

    def _end(self, close: WsClose) -> None:
        """End the stream with ``close``: sent behind what is unsent, or at once (``now``: the
        server's immediate close, else first in line). Either way the client's disconnect
        then ends the receive loop."""
        if self.ended:
            return
        self.ended = True
        if close.now:
            closer = close_now(self.ws.scope)
            if closer is not None and self.ws.client_state is WebSocketState.CONNECTED:
                if self.writer is not None:
                    self.writer.cancel()
                closer(close.code, close.reason)
                return
            if self.out is not None:
                self.out.clear()
            if self.writer is not None:
                self.writer.cancel()
                self.writer = None
            self.out = None
        self._enqueue(close)

    def due(self) -> None:
        """The expiry watch's timer (``wheel.py``): check now."""
        if not self.ended:
            self.check = asyncio.get_running_loop().create_task(self._check_expiry())

    async def _check_expiry(self) -> None:
        """Is the session still there? Checked again when it could first have expired (60 s at
        most); gone: 4404; Redis failing: 1012 (the outcome is unknown)."""
        try:
            pttl = await self.store.pttl_ms(self.sid)
        except RedisUnavailable as exc:
            log.debug("session socket closed, Redis failed: %s", exc.message)
            self._end(WsClose(1012, "redis unavailable"))
            return
        finally:
            self.check = None
        if pttl == -2:
            self._end(WsClose(CLOSE_GONE, "session expired"))
        elif not self.ended:
            wait = 60.0 if pttl < 0 else min(60.0, pttl / 1000 + 0.05)
            self.timers.add(self, wait)

    async def _receive(self) -> None:
        while True:
            text = await receive_text(self.ws)
            if limited := over_rate(self.rate, "session"):  # every message counts, binary too
                self._emit(error_msg("rate_limited", limited))
                continue
            if text is None:
                self._emit(
                    error_msg("bad_message", "binary frames are not supported; send JSON text")
                )
                continue
            started = time.perf_counter()
            action = await self._handle(text)
            self.telemetry.ws_message("in", action, time.perf_counter() - started)

    async def _handle(self, text: str) -> str:
        """Handle one client message; returns its action for telemetry ('invalid' if none)."""
        try:
            data = json.loads(text)
        except ValueError:
            self._emit(error_msg("bad_json", "message is not valid JSON"))
            return "invalid"
        action = data.get("action") if isinstance(data, dict) else None
        try:
            if action == "ping":
                await self.store.touch(self.sid, self.th, iso_z(utc_now()))
                self._emit({"type": "pong"})
            elif action == "analyze":
                ticker = normalize_symbol(data.get("ticker"))
                if ticker is None:
                    self._emit(
                        error_msg("invalid_ticker", f"ticker must be a symbol: {SYMBOL_RULE}")
                    )
                    return "analyze"
                await self.engine.analyze(self.sid, self.th, ticker)
            elif action == "cancel":
                await self.engine.cancel(self.sid, self.th)
            else:
                self._emit(
                    error_msg("unknown_action", "action must be one of analyze, cancel, ping")
                )
                return "invalid"
        except NotInPortfolio as exc:
            self._emit(error_msg(exc.code, exc.message))
        except SessionNotFound as exc:
            raise WsClose(CLOSE_GONE, "session gone") from exc
        except RedisUnavailable:
            raise  # closes with 1012 (serve)
        except MarketPulseError as exc:
            log.warning("ws action failed: %s", exc.message)
            self._emit(error_msg(exc.code, exc.message))
        return str(action)
