"""WebSocket ``/ws/sessions/{id}``: a session's events in commit order, and its actions.

The token comes as the subprotocol ``marketpulse.token.<token>`` (``socket_auth.py``) or, from
older clients, as ``?token=`` (a URL is logged, redacted; a header is not).

Per connection: refuse a foreign Origin or a bad token at the handshake; subscribe to the
session's channel (confirmed by Redis) *before* reading the snapshot, send the snapshot, then
forward only events committed after it (each carries its version): the hub hands them to
``on_event`` as they arrive, which sends each at once when the socket takes it and nothing is
queued ahead of it, else queues it for the single writer. One task group holds the
receive loop, the alert forwarder, the writer and the expiry watchdog, so a disconnect tears all
of them down. A bad message gets an ``error`` and the connection stays open; a message over
4 KiB closes with 1009; an expired or deleted session closes with 4404. The limits
(docs/contracts.md, "Limits"): past the soft message rate a message is answered
``rate_limited``, past the hard one the socket closes with 1008; a client that leaves more than
the send buffer unread closes with 1008 at once; a handshake past the per-session or
per-address socket count is answered 429. Redis failing after the
accept (a call of a loop or an action: the outcome is unknown) closes with 1012, as the hub's
loss does: the client reconnects to a fresh snapshot, which says what committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from marketpulse.errors import (
    MarketPulseError,
    NotInPortfolio,
    RedisUnavailable,
    SessionNotFound,
)
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.pubsub import QUEUE_LIMIT, Subscription
from marketpulse.infra.ws.connection import (
    WsClose,
    admitted,
    message_rate,
    over_rate,
    receive_text,
    refuse_unavailable,
    run_connection,
)
from marketpulse.infra.ws.limits import WsLimits
from marketpulse.infra.ws.origins import origin_allowed
from marketpulse.infra.ws.protocol import send_text_now
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


async def _redis_closes(loop: Coroutine[Any, Any, None]) -> None:
    """``loop``, with Redis failing turned into a close with 1012 (service restart)."""
    try:
        await loop
    except RedisUnavailable as exc:
        log.debug("session socket closed, Redis failed: %s", exc.message)
        raise WsClose(1012, "redis unavailable") from exc


def error_msg(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


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
    async with (
        hub.subscription(keys.session_events(session_id), sink=conn.on_event),
        hub.subscription(keys.ALERT_EVENTS) as alerts,
    ):
        try:
            state = await store.read(session_id, th, iso_z(utc_now()))
        except SessionNotFound:
            await ws.close(code=1008)
            return
        await ws.accept(subprotocol=subprotocol)
        telemetry.client_connected("session")
        try:
            await conn.serve(state, alerts)
        finally:
            telemetry.client_disconnected("session")


class _Connection:
    def __init__(self, ws: WebSocket, session_id: str, token_hash: str) -> None:
        self.ws = ws
        self.sid = session_id
        self.th = token_hash
        state = sessions_state(ws)
        self.store: SessionStore = state["store"]
        self.engine: AnalysisEngine = state["engine"]
        self.out: asyncio.Queue[tuple[str, str] | WsClose] = asyncio.Queue()  # (type, text)
        self.limits: WsLimits = state["ws_counts"].limits
        self.queued_bytes = 0  # of the texts in ``out``: bounded by limits.send_buffer
        self.early: list[bytes | None] | None = []  # events before the snapshot is queued
        self.seen_version = 0
        self.ended = False  # the event stream ended (a close is queued)
        self.held: set[str] = set()
        self.rate = message_rate(ws)
        self.telemetry = state["telemetry"]
        self.send_now = send_text_now(ws.scope)
        self.writing = False  # the writer is awaiting a send that did not go at once
        self.close_at_once: WsClose | None = None  # set by _end(now), raised by _closes
        self.closing = asyncio.Event()

    async def serve(self, state: dict[str, Any], alerts: Subscription) -> None:
        self.held = set(state["holdings"])
        self._emit({"type": "session", "state": state})
        self.seen_version = int(state["version"])
        early, self.early = self.early, None
        for raw in early or ():
            self.on_event(raw)
        loops = (
            self._receive(),
            self._alerts(alerts),
            self._write(),
            self._watch_expiry(),
            self._closes(),
        )
        await run_connection(self.ws, *map(_redis_closes, loops))

    async def _write(self) -> None:
        while True:
            item = await self.out.get()
            if isinstance(item, WsClose):
                raise item
            kind, text = item
            self.queued_bytes -= len(text)
            started = time.perf_counter()
            if self.send_now is None or not self.send_now(text):
                self.writing = True  # queue behind this one meanwhile (see _emit)
                try:
                    await self.ws.send_text(text)
                finally:
                    self.writing = False
            self._sent(kind, started)

    def _emit(self, item: dict[str, Any] | str) -> None:
        """Send ``item`` at once when nothing waits ahead of it and the socket takes it
        synchronously (the usual case: no hop through the writer task per message); otherwise
        queue it for the writer, which keeps the order. A client that leaves more than
        ``limits.send_buffer`` bytes queued (it does not read) is closed with 1008 at once."""
        if self.ended:
            return
        text = item if isinstance(item, str) else _compact(item)
        if self.send_now is not None and not self.writing and self.out.empty():
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
        self.out.put_nowait((_type_of(item), text))

    def _sent(self, kind: str, started: float) -> None:
        self.telemetry.ws_message("out", kind, time.perf_counter() - started)

    def on_event(self, raw: bytes | None) -> None:
        """The session channel's sink, called by the hub as each event arrives (commit order):
        events the snapshot already holds are skipped, the rest queued for the writer; the end
        of the stream queues a close (1012: the hub lost Redis; 1008: this client fell too far
        behind; 4404: the session is gone)."""
        if self.early is not None:
            self.early.append(raw)
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
        if self.out.qsize() >= QUEUE_LIMIT:
            log.warning("session %s client too far behind; closing it", self.sid)
            self._end(WsClose(1008, "too slow", now=True))
            return
        text = body.decode()
        if body.startswith(b'{"type":"portfolio_update"'):
            self.held = set(json.loads(text)["prices"])
        self._emit(text)

    def _end(self, close: WsClose) -> None:
        """End the stream with ``close``: queued behind what is unsent, or at once (``now``)."""
        self.ended = True
        if close.now:
            self.close_at_once = close
            self.closing.set()
        else:
            self.out.put_nowait(close)

    async def _closes(self) -> None:
        """Raises the close that ``_end`` asked for at once (the writer may be stuck behind a
        client that does not read)."""
        await self.closing.wait()
        assert self.close_at_once is not None
        raise self.close_at_once

    async def _alerts(self, sub: Subscription) -> None:
        while True:
            raw = await sub.get()
            if raw is None:
                return
            try:
                alert = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(alert, dict):
                continue
            owner = alert.get("session_id")
            if owner is not None:  # a portfolio alert's fire: only to its own session
                if owner == self.sid:
                    self._emit({**alert, "type": "portfolio_alert"})
            elif alert.get("symbol") in self.held:
                self._emit({**alert, "type": "alert"})

    async def _watch_expiry(self) -> None:
        while True:
            pttl = await self.store.pttl_ms(self.sid)
            if pttl == -2:
                raise WsClose(CLOSE_GONE, "session expired")
            wait = 60.0 if pttl < 0 else min(60.0, pttl / 1000 + 0.05)
            await asyncio.sleep(wait)  # until the session could first have expired

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
            raise  # closes with 1012 (_redis_closes)
        except MarketPulseError as exc:
            log.warning("ws action failed: %s", exc.message)
            self._emit(error_msg(exc.code, exc.message))
        return str(action)
