"""A test app's lifespan state without a lifespan.

The service's edges read their collaborators from ``scope["state"]`` (the state its lifespan
yields). A test that mounts a router on a bare app, served through ``httpx.ASGITransport`` or
uvicorn with ``lifespan="off"``, wraps it with ``with_state`` to hand the same typed state in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


def with_state(app: ASGIApp, state: Mapping[str, Any]) -> ASGIApp:
    """``app`` with ``state`` shallow-copied into each request's scope, as Starlette does."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "state": dict(state)}
        await app(scope, receive, send)

    return wrapped
