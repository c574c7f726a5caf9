"""Pure-ASGI middleware timing every HTTP request into ``Telemetry``.

The route label is the matched route's path template (``/api/sessions/{session_id}``), never the
raw path, so the label set stays bounded; a request that matched no route is ``unmatched``.
WebSocket and lifespan scopes pass straight through. A request that raised is recorded as 500.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marketpulse.observability.telemetry import Telemetry


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class HttpMetricsMiddleware:
    """``app.add_middleware(HttpMetricsMiddleware, telemetry=telemetry)``."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.telemetry.http_observed(
                scope.get("method", "GET"),
                route_template(scope),
                status,
                time.perf_counter() - started,
            )
