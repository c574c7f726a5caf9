"""The one Origin rule of every WebSocket of the service (``MARKETPULSE_ALLOWED_ORIGINS``): a
handshake without ``Origin`` (not a browser) is allowed; one with it must match the allowlist
exactly (by default the service's own origin)."""

from __future__ import annotations

from starlette.websockets import WebSocket


def origin_allowed(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    allowed = getattr(ws.app.state, "allowed_origins", None)
    return origin is None or allowed is None or origin in allowed
