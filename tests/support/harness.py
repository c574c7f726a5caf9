"""A real server for tests: create_app served by uvicorn in-process on a free port, plus a
WebSocket client that records every message it receives (for checkers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import httpx
import uvicorn
import websockets
from fastapi import FastAPI
from websockets.typing import Subprotocol

from marketpulse.app import AppState, create_app
from marketpulse.config import Settings
from marketpulse.infra.redis.embedded import free_port
from marketpulse.infra.ws.protocol import ws_options
from marketpulse.sessions.socket_auth import subprotocols

TokenVia = Literal["subprotocol", "query"]


async def connect_session(
    ws_base: str, sid: str, token: str, *, via: TokenVia = "subprotocol", **kw: Any
) -> websockets.ClientConnection:
    """Open ``/ws/sessions/{sid}`` with ``token`` carried ``via`` a subprotocol or ``?token=``."""
    if via == "query":
        return await websockets.connect(f"{ws_base}/ws/sessions/{sid}?token={token}", **kw)
    offered = [Subprotocol(p) for p in subprotocols(token)]
    return await websockets.connect(f"{ws_base}/ws/sessions/{sid}", subprotocols=offered, **kw)


@dataclass
class Server:
    app: FastAPI
    base: str
    http: httpx.AsyncClient
    state: AppState  # what the app's lifespan yielded (its services, stores and loops)

    @property
    def ws_base(self) -> str:
        return self.base.replace("http://", "ws://")

    async def create_session(
        self, holdings: Mapping[str, float], sid: str | None = None
    ) -> tuple[str, str, dict[str, Any]]:
        body: dict[str, Any] = {"holdings": dict(holdings)}
        if sid is not None:
            body["session_id"] = sid
        r = await self.http.post("/api/sessions", json=body)
        assert r.status_code == 201, r.text
        data = r.json()
        return data["session_id"], data["token"], data["state"]

    async def connect(
        self, sid: str, token: str, *, via: TokenVia = "subprotocol", **kw: Any
    ) -> Client:
        """A session socket, its snapshot awaited; the token as a subprotocol (the documented
        way) or, ``via="query"``, as an older client sends it."""
        ws = await connect_session(self.ws_base, sid, token, via=via, **kw)
        client = Client(ws)
        client.start()
        await client.next("session")
        return client


def settings_for(redis_url: str, **overrides: Any) -> Settings:
    port = free_port()
    base: dict[str, Any] = {
        "redis_url": redis_url,
        "port": port,
        "market_interval": 3600.0,  # tests drive revaluations by hand unless they say otherwise
        "metric_delay": "0.01-0.05",
        "session_ttl": 3600,
        "watchlist": (),  # the monitor watches only what a test adds
    }
    base.update(overrides)
    return Settings(**base)


_servers: dict[Any, uvicorn.Server] = {}  # app -> the uvicorn server serving it


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any,
    port: int = 0,
    *,
    lifespan: Literal["auto", "on", "off"] = "on",
    ws: Mapping[str, Any] | None = None,
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn and this app's WebSocket options on a socket that listens
    before uvicorn starts: a client may connect at once (the kernel queues it until uvicorn,
    past its lifespan startup, accepts); ``ws`` overrides ``ws_options()``. Yields ``http://127.0.0.1:<port>``."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    options = {**ws_options(), **(ws or {})}
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, **options)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    _servers[app] = server
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        _servers.pop(app, None)
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def serve(settings: Settings, *, freeze_heap: bool = False) -> AsyncIterator[Server]:
    app = create_app(settings, freeze_heap=freeze_heap)
    async with (
        serve_asgi(
            app,
            settings.port,
            ws=ws_options(settings.ws_ping_interval, settings.ws_ping_timeout),
        ) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        # readiness probe: answered only once the lifespan startup is done
        await asyncio.wait_for(http.get("/readyz"), 20)
        state = cast(AppState, _servers[app].lifespan.state)
        yield Server(app=app, base=base, http=http, state=state)


@dataclass
class Client:
    """Records every message; ``next(type)`` awaits the next unread message of a type."""

    ws: Any
    log: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    _cursor: dict[str, int] = field(default_factory=dict)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._reader())

    async def _reader(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                async with self._arrived:
                    self.log.append(msg)
                    self._arrived.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closed.done():
                self.closed.set_result(self.ws.close_code)
            async with self._arrived:
                self._arrived.notify_all()

    async def next(self, type_: str, within: float = 10.0, **match: Any) -> dict[str, Any]:
        start = self._cursor.get(type_, 0)
        async with asyncio.timeout(within), self._arrived:
            while True:
                for i in range(start, len(self.log)):
                    m = self.log[i]
                    if m.get("type") == type_ and all(m.get(k) == v for k, v in match.items()):
                        self._cursor[type_] = i + 1
                        return m
                start = len(self.log)
                if self.closed.done():
                    raise AssertionError(f"closed ({self.closed.result()}) before {type_} {match}")
                await self._arrived.wait()

    async def send(self, obj: Any) -> None:
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def close(self) -> None:
        await self.ws.close()
        if self._task is not None:
            await self._task

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.log if m.get("type") == type_]


RECONNECT_S = 0.05  # a reconnecting client's pause between handshakes the service refused


@dataclass
class Follower:
    """One client of a session that reconnects when the service closes its socket (1012 on a
    Redis fault, or its instance died): ``connections`` are its sockets in order, each a
    ``Client`` whose log starts with that connection's snapshot. A handshake refused (HTTP 503
    while Redis is unreachable, a refused port) is tried again, on the next of ``ws_bases`` (the
    instances it may use), under a deadline."""

    ws_bases: list[str]
    sid: str
    token: str
    connections: list[Client] = field(default_factory=list)
    refused: int = 0
    _next_base: int = 0

    @property
    def closes(self) -> list[int | None]:
        return [c.closed.result() for c in self.connections if c.closed.done()]

    async def connect(self, within: float = 30.0) -> Client:
        async with asyncio.timeout(within):
            while True:  # bounded by the deadline
                base = self.ws_bases[self._next_base % len(self.ws_bases)]
                try:
                    ws = await connect_session(base, self.sid, self.token, open_timeout=5)
                except (OSError, TimeoutError, websockets.InvalidStatus) as exc:
                    if (
                        isinstance(exc, websockets.InvalidStatus)
                        and exc.response.status_code != 503
                    ):
                        raise  # only "try again later" is expected of a fault
                    self.refused += 1
                    self._next_base += 1
                    await asyncio.sleep(RECONNECT_S)  # wait-ok: a client's reconnect backoff
                    continue
                client = Client(ws)
                client.start()
                try:
                    await client.next("session", within=10)
                except AssertionError:  # closed right after the accept: try again
                    await client.close()
                    continue
                self.connections.append(client)
                return client

    async def current(self) -> Client:
        """The open connection, reconnecting first if the last one was closed."""
        if self.connections and not self.connections[-1].closed.done():
            return self.connections[-1]
        return await self.connect()

    async def send(self, obj: Any) -> None:
        """Send on the open connection; once more on a fresh one if the service closed it."""
        for _ in range(2):
            client = await self.current()
            try:
                await client.send(obj)
                return
            except websockets.ConnectionClosed:
                await client.closed

    async def until_basis(self, basis: int, within: float = 30.0) -> None:
        """Until this client has seen ``basis_version`` ``basis`` (the snapshot of a connection
        or a ``portfolio_update`` on it): then it has every event committed before it."""
        async with asyncio.timeout(within):
            while True:
                client = await self.current()
                if client.log[0]["state"]["basis_version"] >= basis:
                    return
                try:
                    await client.next("portfolio_update", within=within, basis_version=basis)
                    return
                except AssertionError:  # closed first: the next connection's snapshot has it
                    continue

    async def close(self) -> None:
        for c in self.connections:
            await c.close()
