"""The dashboard routes and the HTTP metrics middleware on a small app with a real Redis.

A scripted workload (HTTP requests through the middleware, plus the report calls the services
make) then a scrape of ``/metrics``: every metric family of the issue is present with plausible
values. The full-service version of this test runs against ``create_app``
(test_metrics_after_a_workload.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp

from marketpulse.infra.http_errors import install_error_handlers
from marketpulse.infra.redis.client import RedisClient
from marketpulse.observability.health import HealthLimits
from marketpulse.observability.http import mount_dashboard, router
from marketpulse.observability.http_metrics import HttpMetricsMiddleware
from marketpulse.observability.loop_lag import LoopLagMonitor
from marketpulse.observability.system_feed import SystemFeed
from marketpulse.observability.telemetry import Telemetry
from support.asgi import with_state

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class FixedFetcher:
    """Stands in for the DataFetcher's status report (we own this fake)."""

    def provider_status(self) -> list[dict[str, object]]:
        return [
            {
                "name": "simulated",
                "state": "closed",
                "last_error": None,
                "last_latency_ms": 0.2,
                "ok": 5,
                "failed": 0,
            },
        ]


def build_app(telemetry: Telemetry, redis: RedisClient | None) -> ASGIApp:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(HttpMetricsMiddleware, telemetry=telemetry)
    app.include_router(router)

    @app.get("/api/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/api/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    mount_dashboard(app)
    feed = SystemFeed(telemetry, redis, FixedFetcher())
    return with_state(app, {"telemetry": telemetry, "system_feed": feed})


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
async def client(redis_boundary: RedisClient) -> AsyncIterator[tuple[httpx.AsyncClient, Telemetry]]:
    telemetry = Telemetry(HealthLimits(provider_latency_ms=1000, loop_lag_ms=100))
    app = build_app(telemetry, redis_boundary)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c, telemetry


async def test_metrics_after_a_scripted_workload(
    client: tuple[httpx.AsyncClient, Telemetry],
) -> None:
    http, telemetry = client
    for i in range(3):
        assert (await http.get(f"/api/things/{i}")).status_code == 200
    assert (await http.get("/nowhere")).status_code == 404
    assert (await http.get("/")).status_code == 200
    # what the services report while they work
    telemetry.ws_message("in", "analyze", 0.002)
    telemetry.ws_message("out", "analysis_result", 0.001)
    telemetry.provider_call("simulated", "ok", 0.01)
    telemetry.provider_call("yahoo", "timeout", 2.5)
    for hit in (True, True, False):
        telemetry.cache(hit)
    for event in ("started", "restarted", "started", "cancelled", "started", "failed", "completed"):
        telemetry.analysis_event(event)
    telemetry.analysis_completed(3.25)
    telemetry.alert_evaluated(40)
    telemetry.alert_fired()
    telemetry.sweep_observed(0.05, 7)
    telemetry.client_connected("session")
    telemetry.client_connected("alerts")
    telemetry.client_connected("alerts")
    telemetry.client_disconnected("alerts")
    telemetry.set_active_sessions(4)
    await LoopLagMonitor(telemetry).run_once()

    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    s = parse(response.text)

    def hist_count(name: str, **labels: str) -> float:
        return s[(f"{name}_count", tuple(sorted(labels.items())))]

    route = {"method": "GET", "route": "/api/things/{thing_id}", "status": "200"}
    assert hist_count("marketpulse_http_request_duration_seconds", **route) == 3
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert hist_count("marketpulse_http_request_duration_seconds", **unmatched) == 1
    assert (
        hist_count("marketpulse_ws_message_duration_seconds", direction="in", type="analyze") == 1
    )
    assert hist_count("marketpulse_provider_call_duration_seconds", provider="yahoo") == 1
    calls = "marketpulse_provider_calls_total"
    assert s[(calls, (("outcome", "timeout"), ("provider", "yahoo")))] == 1
    assert s[(calls, (("outcome", "ok"), ("provider", "simulated")))] == 1
    assert s[("marketpulse_cache_hits_total", ())] == 2
    assert s[("marketpulse_cache_misses_total", ())] == 1
    runs = {k[1][0][1]: v for k, v in s.items() if k[0] == "marketpulse_analysis_runs_total"}
    assert runs == {"started": 3, "restarted": 1, "cancelled": 1, "completed": 1, "failed": 1}
    assert s[("marketpulse_analysis_duration_seconds_sum", ())] == 3.25
    assert s[("marketpulse_alerts_evaluated_total", ())] == 40
    assert s[("marketpulse_alerts_fired_total", ())] == 1
    assert hist_count("marketpulse_revaluation_sweep_duration_seconds") == 1
    assert s[("marketpulse_sessions_revalued_total", ())] == 7
    assert s[("marketpulse_connected_clients", (("kind", "session"),))] == 1
    assert s[("marketpulse_connected_clients", (("kind", "alerts"),))] == 1
    assert s[("marketpulse_connected_clients", (("kind", "dashboard"),))] == 0
    assert s[("marketpulse_active_sessions", ())] == 4
    assert 0 <= s[("marketpulse_event_loop_lag_seconds", ())] < 60
    assert hist_count("marketpulse_event_loop_lag_sample_seconds") == 1
    assert 1024**2 < s[("marketpulse_process_resident_memory_bytes", ())] < 64 * 1024**3
    perf = "marketpulse_performance_alerts_total"
    assert s[(perf, (("kind", "provider_latency"),))] == 1


async def test_system_reports_redis_providers_and_health_warnings(
    client: tuple[httpx.AsyncClient, Telemetry],
) -> None:
    http, telemetry = client
    telemetry.provider_call("yahoo", "ok", 1.5)  # over the 1000 ms limit
    telemetry.set_active_sessions(2)
    telemetry.client_connected("dashboard")
    body = (await http.get("/api/system")).json()
    assert body["redis"]["ok"] is True
    assert body["redis"]["latency_ms"] >= 0
    assert body["providers"][0]["name"] == "simulated"
    assert body["providers"][0]["state"] == "closed"
    assert body["active_sessions"] == 2
    assert body["connected_clients"]["dashboard"] == 1
    [warning] = body["health_warnings"]
    assert warning["kind"] == "provider_latency"
    assert warning["subject"] == "yahoo"
    assert warning["value"] == 1500.0
    assert body["limits"]["provider_latency_ms"] == 1000


async def test_system_without_redis_says_so() -> None:
    app = build_app(Telemetry(), None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        body = (await http.get("/api/system")).json()
    assert body["redis"] == {"ok": False, "latency_ms": None, "error": "not configured"}


async def test_dashboard_page_and_static_files(
    client: tuple[httpx.AsyncClient, Telemetry],
) -> None:
    http, _ = client
    page = await http.get("/")
    assert page.status_code == 200
    for marker in ('id="market"', 'id="alerts"', 'id="portfolio"', 'id="system"'):
        assert marker in page.text
    for name in ("portfolio_risk", "concentration", "correlation", "momentum", "allocation_score"):
        assert f'data-testid="metric-{name}"' in page.text
    for path in (
        "/static/js/main.js",
        "/static/dashboard.css",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/vendor/uplot/LICENSE",
    ):
        assert (await http.get(path)).status_code == 200, path
    assert (await http.get("/static/nope.js")).status_code == 404


async def test_a_request_that_raises_is_recorded_as_500() -> None:
    telemetry = Telemetry()
    transport = httpx.ASGITransport(app=build_app(telemetry, None), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/api/broken")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal"
    s = parse(telemetry.render().decode())
    key = (("method", "GET"), ("route", "/api/broken"), ("status", "500"))
    assert s[("marketpulse_http_request_duration_seconds_count", key)] == 1
