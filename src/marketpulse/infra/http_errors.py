"""Map every error to ``{"error": {"code", "message"}}`` with a fitting status; never a trace.

``ErrorBody`` is that answer's wire model and ``error_responses`` lists an operation's error
statuses for the OpenAPI description, so what the document promises is what the handlers send
(including 422, which FastAPI would otherwise describe as its own ``HTTPValidationError``).

A 405 (``OPTIONS`` included: we answer no preflight) carries ``Allow`` with the methods of the
resource at that path. Starlette's router would name only those of the first route that matched
the path, and FastAPI gives each method its own route.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from marketpulse.errors import MarketPulseError, RedisUnavailable

log = logging.getLogger(__name__)

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_METHODS_LOWER = tuple(m.lower() for m in _METHODS)

# what each error status means, as the OpenAPI description says it (operations may say more)
STATUS_MEANINGS: dict[int, str] = {
    400: "the body could not be read (for example it is not UTF-8 text)",
    404: "not found",
    409: "conflict",
    413: "`payload_too_large`: the request body is over `MARKETPULSE_HTTP_MAX_BODY` bytes",
    422: "invalid input: the message says which part and why",
    503: "a dependency (Redis or every market data source) is unavailable",
}


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable reason", examples=["invalid_input"])
    message: str = Field(description="what went wrong, for a person")


class ErrorBody(BaseModel):
    """Every error answer of the HTTP API."""

    error: ErrorDetail


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_responses(
    *statuses: int, described: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for these error statuses, all answering ``ErrorBody``;
    ``described`` says more than ``STATUS_MEANINGS`` for some of them."""
    said = described or {}
    return {
        status: {"model": ErrorBody, "description": said.get(status, STATUS_MEANINGS[status])}
        for status in statuses
    }


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def _template_re(template: str) -> re.Pattern[str]:
    return re.compile(
        "".join(
            "[^/]+" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[^}]+\})", template)
        )
    )


def _described_paths(app: FastAPI) -> list[tuple[re.Pattern[str], list[str]]]:
    """(URL pattern, methods) of each path of the app's OpenAPI description, concrete paths
    before templated ones: the order in which OpenAPI matches a URL to a path. (FastAPI
    builds the document once and keeps it; a 405 is rare enough to compile these each time.)"""
    paths: dict[str, dict[str, Any]] = app.openapi().get("paths", {})
    ordered = sorted(paths, key=lambda template: template.count("{"))
    return [
        (_template_re(t), [m.upper() for m in _METHODS_LOWER if m in paths[t]]) for t in ordered
    ]


def allowed_methods(request: Request) -> list[str]:
    """The methods of the resource at this request's path.

    For a path the OpenAPI description has, its methods there (so ``/api/alerts/history`` is
    GET, though a DELETE of that URL reaches ``DELETE /api/alerts/{alert_id}`` with the id
    ``history``). Otherwise every method some route answers, each probed through the routes'
    own ``matches``: FastAPI keeps an included router's routes inside it."""
    path = request.scope["path"]
    for pattern, methods in _described_paths(request.app):
        if pattern.fullmatch(path):
            return methods
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


REDIS_UNAVAILABLE = "Redis is unavailable; try again later"
RETRY_AFTER_S = "1"


def redis_unavailable_response(exc: RedisUnavailable) -> JSONResponse:
    """503 ``redis_unavailable`` with ``Retry-After``. The message names no internal address
    (the error's own, which may, goes to the log as one line, no stack)."""
    log.info("answered 503 redis_unavailable: %s", exc.message)
    body = error_body(exc.code, REDIS_UNAVAILABLE)
    return JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER_S})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MarketPulseError)
    async def _ours(_: Request, exc: MarketPulseError) -> JSONResponse:
        if isinstance(exc, RedisUnavailable):
            return redis_unavailable_response(exc)
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_input", _describe(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            413: "payload_too_large",
        }.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body("internal", "internal server error"), status_code=500)
