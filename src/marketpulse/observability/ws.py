"""WebSocket ``/ws/dashboard``: the live Market and System parts of the dashboard.

Server → client:

- ``{"type": "quote", "symbol", "price", "currency", "volume", "timestamp", "previous_close",
  "source", "stale", "age_s", "market_open", "session_date", "next_open", "estimated", ...}``: a
  quote of a monitored symbol, each time the monitor observes one (the monitor publishes it on
  Redis, ``market/events.py``; every instance forwards it). ``currency`` is the ISO 4217 code
  the prices are in. From a live source the market fields say whether the symbol's exchange is
  open and, when closed, its next open (the card shows "closed, opens ..."); they are null for
  a tick-addressed market.
- ``{"type": "system", ...}``: this instance's ``/api/system`` report, every
  ``MARKETPULSE_SYSTEM_INTERVAL`` seconds (built once per instance,
  ``observability/system_feed.py``).
- on connect, a snapshot: one ``system`` frame, then one ``quote`` frame per monitored symbol
  that has a quote. The quote channel is subscribed before the snapshot is read, so nothing
  observed after the snapshot is missed (a quote may arrive twice; ``timestamp`` orders them).
- ``{"type": "pong"}`` for ``{"action": "ping"}``; ``{"type": "error", "code", "message"}``
  for anything else (``bad_json``, ``unknown_action``, ``bad_message`` for a binary frame):
  the connection stays open. A message over 4 KiB closes with 1009.

A foreign ``Origin`` is refused at the handshake (as on every socket of the service). The
receive loop, both forwarders and the single writer live in one task group per connection, so
a disconnect tears all of them down; the connection counts in
``connected_clients{kind="dashboard"}`` while it is open. If the instance loses its pub/sub
connection the socket closes with 1012 (the page reconnects to a fresh snapshot); a client too
slow for the quote stream is closed with 1008. A handshake while the hub is down is answered
HTTP 503 ``redis_unavailable`` with ``Retry-After`` (as the session socket's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TypedDict, cast

from fastapi import APIRouter, WebSocket
from starlette.requests import HTTPConnection

from marketpulse.alerts.monitor import MonitorService
from marketpulse.errors import MarketPulseError, RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.pubsub import EventHub, Subscription
from marketpulse.infra.ws.connection import (
    WsClose,
    admitted,
    message_rate,
    over_rate,
    receive_text,
    refuse_unavailable,
    run_connection,
)
from marketpulse.infra.ws.origins import origin_allowed
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.quotes import StockData, quote_frame
from marketpulse.observability.system_feed import SystemFeed
from marketpulse.observability.telemetry import Telemetry

log = logging.getLogger(__name__)
router = APIRouter()

OUT_QUEUE = 256  # frames waiting for the writer; a full queue holds the forwarders back
KIND = "dashboard"


class DashboardState(TypedDict):
    """What ``/ws/dashboard`` takes from the app's lifespan state."""

    hub: EventHub
    system_feed: SystemFeed
    telemetry: Telemetry
    monitor: MonitorService
    fetcher: DataFetcher


def dashboard_state(conn: HTTPConnection) -> DashboardState:
    return cast(DashboardState, conn.scope["state"])


def _error(code: str, message: str) -> str:
    return json.dumps({"type": "error", "code": code, "message": message})


@router.websocket("/ws/dashboard")
async def dashboard_socket(ws: WebSocket) -> None:
    if not origin_allowed(ws):
        await ws.close(code=1008)
        return
    state = dashboard_state(ws)
    hub, feed, telemetry = state["hub"], state["system_feed"], state["telemetry"]
    async with contextlib.AsyncExitStack() as stack:
        if not await stack.enter_async_context(admitted(ws, KIND)):
            return
        try:
            quotes = await stack.enter_async_context(hub.subscription(keys.QUOTE_EVENTS_ALL))
        except RedisUnavailable as exc:  # the hub is down: HTTP 503, as the session socket
            log.info("dashboard socket refused: %s", exc.message)
            await refuse_unavailable(ws, exc)
            return
        system = stack.enter_context(feed.listen())
        await ws.accept()
        telemetry.client_connected(KIND)
        try:
            await _Connection(ws, telemetry).serve(quotes, system)
        finally:
            telemetry.client_disconnected(KIND)


class _Connection:
    def __init__(self, ws: WebSocket, telemetry: Telemetry) -> None:
        self.ws = ws
        self.telemetry = telemetry
        state = dashboard_state(ws)
        self.feed: SystemFeed = state["system_feed"]
        self.monitor: MonitorService = state["monitor"]
        self.fetcher: DataFetcher = state["fetcher"]
        self.out: asyncio.Queue[tuple[str, str]] = asyncio.Queue(OUT_QUEUE)
        self.rate = message_rate(ws)

    async def serve(self, quotes: Subscription, system: asyncio.Queue[str]) -> None:
        snapshot = [("system", await self.feed.frame())]
        snapshot += [("quote", quote_frame(q)) for q in await self._quotes()]
        await run_connection(
            self.ws,
            self._write(snapshot),
            self._receive(),
            self._forward_quotes(quotes),
            self._forward_system(system),
        )

    async def _quotes(self) -> list[StockData]:
        """The latest quote of each monitored symbol (those that have one), by symbol."""
        try:
            symbols = await self.monitor.symbols()
            found = await self.fetcher.fetch_batch_data(symbols)
        except MarketPulseError as exc:
            log.warning("dashboard snapshot without quotes: %r", exc)
            return []
        return [found[s] for s in sorted(found)]

    async def _write(self, snapshot: list[tuple[str, str]]) -> None:
        for kind, text in snapshot:
            await self._send(kind, text)
        while True:
            kind, text = await self.out.get()
            await self._send(kind, text)

    async def _send(self, kind: str, text: str) -> None:
        started = time.perf_counter()
        await self.ws.send_text(text)
        self.telemetry.ws_message("out", kind, time.perf_counter() - started)

    async def _forward_quotes(self, sub: Subscription) -> None:
        while True:
            raw = await sub.get()
            if raw is None:
                raise WsClose(1008 if sub.overflowed else 1012)  # too slow / service restart
            await self.out.put(("quote", raw.decode()))

    async def _forward_system(self, system: asyncio.Queue[str]) -> None:
        while True:
            await self.out.put(("system", await system.get()))

    async def _receive(self) -> None:
        while True:
            text = await receive_text(self.ws)
            started = time.perf_counter()
            if limited := over_rate(self.rate, KIND):
                await self.out.put(("error", _error("rate_limited", limited)))
                continue
            if text is None:
                action = "invalid"
                answer = _error("bad_message", "binary frames are not supported; send JSON text")
            else:
                action, answer = _answer(text)
            await self.out.put(("pong" if action == "ping" else "error", answer))
            self.telemetry.ws_message("in", action, time.perf_counter() - started)


def _answer(text: str) -> tuple[str, str]:
    """(the action for telemetry, the reply frame) of one client message."""
    try:
        data = json.loads(text)
    except ValueError:
        return "invalid", _error("bad_json", "message is not valid JSON")
    if isinstance(data, dict) and data.get("action") == "ping":
        return "ping", '{"type":"pong"}'
    return "invalid", _error("unknown_action", "the only action is 'ping'")
