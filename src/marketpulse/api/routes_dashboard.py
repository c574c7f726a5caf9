"""The dashboard page, ``/metrics`` and ``/api/system``.

Handlers read their collaborators from ``request.app.state``: ``telemetry`` (required),
``redis`` and ``fetcher`` (optional: the System part reports them missing instead of failing).
The page itself is a server-rendered template plus plain JavaScript; it talks to the service only
through the public HTTP and WebSocket contracts of DESIGN.md.
"""

from __future__ import annotations

import inspect
import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from redis.exceptions import RedisError

from marketpulse.services.telemetry import CONTENT_TYPE, Telemetry

log = logging.getLogger(__name__)

DASHBOARD_DIR = Path(str(resources.files("marketpulse") / "dashboard"))
METRIC_NAMES = ("portfolio_risk", "concentration", "correlation", "momentum", "allocation_score")

router = APIRouter()


def mount_dashboard(app: FastAPI) -> None:
    """Serve ``dashboard/static`` at ``/static`` (the page's JS, CSS and vendored uPlot) and
    load the page's templates into ``app.state.dashboard_templates``."""
    app.mount("/static", StaticFiles(directory=str(DASHBOARD_DIR / "static")), name="static")
    app.state.dashboard_templates = Jinja2Templates(directory=str(DASHBOARD_DIR / "templates"))


def _templates(request: Request) -> Jinja2Templates:
    templates = getattr(request.app.state, "dashboard_templates", None)
    if not isinstance(templates, Jinja2Templates):
        templates = Jinja2Templates(directory=str(DASHBOARD_DIR / "templates"))
        request.app.state.dashboard_templates = templates
    return templates


def _telemetry(request: Request) -> Telemetry:
    telemetry: Telemetry = request.app.state.telemetry
    return telemetry


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(request: Request) -> HTMLResponse:
    """The dashboard: Market, Alerts, Portfolio and System."""
    return _templates(request).TemplateResponse(
        request, "index.html", {"metric_names": METRIC_NAMES}, headers={"Cache-Control": "no-store"}
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this instance's registry."""
    return Response(_telemetry(request).render(), media_type=CONTENT_TYPE)


async def _redis_health(request: Request) -> dict[str, Any]:
    redis = getattr(request.app.state, "redis", None)
    if redis is None:
        return {"ok": False, "latency_ms": None, "error": "not configured"}
    started = time.perf_counter()
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        return {"ok": False, "latency_ms": None, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000.0, 3)}


async def _providers(request: Request) -> list[dict[str, Any]]:
    fetcher = getattr(request.app.state, "fetcher", None)
    status = getattr(fetcher, "provider_status", None)
    if status is None:
        return []
    result = status()
    if inspect.isawaitable(result):
        result = await result
    rows: list[dict[str, Any]] = []
    for item in result or ():
        if isinstance(item, dict):
            raw = dict(item)
        elif hasattr(item, "model_dump"):
            raw = item.model_dump(mode="json")
        else:
            raw = {k: v for k, v in vars(item).items() if not k.startswith("_")}
        rows.append(_provider_row(raw))
    return rows


def _provider_row(raw: dict[str, Any]) -> dict[str, Any]:
    """One provider in the dashboard's shape, whichever of the known spellings the fetcher used."""

    def first(*names: str) -> Any:
        return next((raw[n] for n in names if raw.get(n) is not None), None)

    return {
        **raw,
        "name": first("name", "provider"),
        "state": first("state", "circuit"),
        "last_error": first("last_error"),
        "last_latency_ms": first("last_latency_ms"),
        "ok": first("ok", "calls_ok"),
        "failed": first("failed", "calls_failed"),
    }


@router.get("/api/system")
async def system(request: Request) -> JSONResponse:
    """Health and load of this instance, for the dashboard's System part.

    ``{"redis": {"ok", "latency_ms"}, "providers": [{"name", "state", ...}],
    "connected_clients": {kind: n}, "active_sessions", "loop_lag_ms", "rss_bytes",
    "performance_alerts": [newest first], "limits": {...}}``
    """
    body: dict[str, Any] = {"redis": await _redis_health(request)}
    body["providers"] = await _providers(request)
    body.update(_telemetry(request).snapshot())
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
