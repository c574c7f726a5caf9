"""A webhook receiver on loopback for the alert tests: a real aiohttp server at ``/hook``.

Each POST is answered with the next scripted ``(status, headers)`` (200 once the script is
out); every body and ``Idempotency-Key`` is recorded, and the key of each POST answered 200
is put on ``delivered``, so a test awaits a delivery instead of polling.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from aiohttp import web


class WebhookReceiver:
    def __init__(self, script: Iterable[tuple[int, dict[str, str]]] = ()) -> None:
        self.script: deque[tuple[int, dict[str, str]]] = deque(script)
        self.bodies: list[dict[str, Any]] = []
        self.keys: list[str | None] = []
        self.delivered: asyncio.Queue[str | None] = asyncio.Queue()
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def ids(self) -> list[object]:
        """The ``id`` of every body received (the fire id), in order."""
        return [b["id"] for b in self.bodies]

    async def _handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        key = request.headers.get("Idempotency-Key")
        self.keys.append(key)
        status, headers = self.script.popleft() if self.script else (200, {})
        if status == 200:
            self.delivered.put_nowait(key)
        return web.Response(status=status, headers=headers)

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:``port`` (0: a free one); the URL to POST to."""
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{bound}/hook"
        return self.url

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
