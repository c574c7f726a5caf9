"""The dashboard page, ``/metrics`` and ``/api/system``.

Handlers read their collaborators from the lifespan state (``ObservabilityState``):
``telemetry`` and ``system_feed`` (the report of ``observability/system_feed.py``). The live
side of the dashboard is ``/ws/dashboard`` (``observability/ws.py``). The page itself is a
server-rendered template plus plain JavaScript; it talks to the service only through the public
HTTP and WebSocket contracts (``docs/contracts.md``).
"""

from __future__ import annotations

import logging
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TypedDict, cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.requests import HTTPConnection

from marketpulse.observability.system_feed import SystemFeed
from marketpulse.observability.telemetry import CONTENT_TYPE, Telemetry

log = logging.getLogger(__name__)

DASHBOARD_DIR = Path(str(resources.files("marketpulse.observability") / "dashboard"))
METRIC_NAMES = ("portfolio_risk", "concentration", "correlation", "momentum", "allocation_score")

router = APIRouter()


class ObservabilityState(TypedDict):
    """What the observability edge takes from the app's lifespan state."""

    telemetry: Telemetry
    system_feed: SystemFeed


def observability_state(conn: HTTPConnection) -> ObservabilityState:
    return cast(ObservabilityState, conn.scope["state"])


def mount_dashboard(app: FastAPI) -> None:
    """Serve ``dashboard/static`` at ``/static`` (the page's JS, CSS and vendored uPlot)."""
    app.mount("/static", StaticFiles(directory=str(DASHBOARD_DIR / "static")), name="static")


@cache
def _templates() -> Jinja2Templates:
    return Jinja2Templates(directory=str(DASHBOARD_DIR / "templates"))


def _telemetry(request: Request) -> Telemetry:
    return observability_state(request)["telemetry"]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(request: Request) -> HTMLResponse:
    """The dashboard: Market, Alerts, Portfolio and System."""
    return _templates().TemplateResponse(
        request, "index.html", {"metric_names": METRIC_NAMES}, headers={"Cache-Control": "no-store"}
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this instance's registry."""
    return Response(_telemetry(request).render(), media_type=CONTENT_TYPE)


@router.get("/api/system")
async def system(request: Request) -> JSONResponse:
    """Health and load of this instance, for the dashboard's System part.

    ``{"redis": {"ok", "latency_ms"}, "providers": [{"name", "state", ...}],
    "connected_clients": {kind: n}, "active_sessions", "loop_lag_ms", "rss_bytes",
    "health_warnings": [newest first], "limits": {...}, "asyncio_tasks"}``
    """
    body = await observability_state(request)["system_feed"].report()
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
