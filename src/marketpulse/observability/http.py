"""The dashboard page, ``/metrics`` and ``/api/system``.

Handlers read their collaborators from ``request.app.state``: ``telemetry`` (required) and
``system_feed`` (the report of ``observability/system_feed.py``; without it one is built over
``redis`` and ``fetcher``, both optional: the System part reports them missing instead of
failing). The live side of the dashboard is ``/ws/dashboard`` (``observability/ws.py``).
The page itself is a server-rendered template plus plain JavaScript; it talks to the service only
through the public HTTP and WebSocket contracts of DESIGN.md.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from marketpulse.observability.system_feed import SystemFeed
from marketpulse.observability.telemetry import CONTENT_TYPE, Telemetry

log = logging.getLogger(__name__)

DASHBOARD_DIR = Path(str(resources.files("marketpulse.observability") / "dashboard"))
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


def _system_feed(request: Request) -> SystemFeed:
    """The app's feed; an app built without the lifespan (tests) gets one over its state."""
    feed = getattr(request.app.state, "system_feed", None)
    if isinstance(feed, SystemFeed):
        return feed
    state = request.app.state
    return SystemFeed(
        _telemetry(request), getattr(state, "redis", None), getattr(state, "fetcher", None)
    )


@router.get("/api/system")
async def system(request: Request) -> JSONResponse:
    """Health and load of this instance, for the dashboard's System part.

    ``{"redis": {"ok", "latency_ms"}, "providers": [{"name", "state", ...}],
    "connected_clients": {kind: n}, "active_sessions", "loop_lag_ms", "rss_bytes",
    "performance_alerts": [newest first], "limits": {...}}``
    """
    body = await _system_feed(request).report()
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
