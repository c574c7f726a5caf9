"""Pure-ASGI middleware bounding an HTTP request body: past ``max_bytes`` the answer is 413
``{"error": {"code": "payload_too_large", ...}}`` and the rest of the body is never read.

A ``Content-Length`` over the bound is answered before the app runs. Without one (chunked), or
with a lie, the bytes are counted as they arrive: the receive that passes the bound raises
``HTTPException(413)``, which the app's error handlers turn into the same answer (FastAPI reads
a body before the route runs, so nothing has been answered yet). The app never holds more than
``max_bytes`` of a body plus one chunk.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marketpulse.infra.http_errors import error_body

TOO_LARGE = "payload_too_large"


def too_large_message(max_bytes: int) -> str:
    return f"the request body is over {max_bytes} bytes"


class BodyLimitMiddleware:
    """``app.add_middleware(BodyLimitMiddleware, max_bytes=n)``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # uvicorn (h11, httptools) refuses a malformed one itself
                if declared > self.max_bytes:
                    body = error_body(TOO_LARGE, too_large_message(self.max_bytes))
                    await JSONResponse(body, status_code=413)(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, too_large_message(self.max_bytes))
            return message

        await self.app(scope, counted, send)
