"""The one Origin rule of every WebSocket of the service (``MARKETPULSE_ALLOWED_ORIGINS``): a
handshake without ``Origin`` (not a browser) is allowed; one with it must match the allowlist
exactly (by default the service's own origin). The allowlist is the lifespan state's
``allowed_origins``; an app without it (a test app) allows every origin."""

from __future__ import annotations

from starlette.websockets import WebSocket


def origin_allowed(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    allowed = ws.scope.get("state", {}).get("allowed_origins")
    return origin is None or allowed is None or origin in allowed
