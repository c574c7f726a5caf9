"""``/metrics`` of the real app (``create_app``) after a scripted workload.

The workload goes through the public contracts only, on a real uvicorn server
(``support/harness.py``): create a session over HTTP, follow it over its WebSocket, analyze a
holding until ``analysis_complete``, wait for a revaluation (``portfolio_update``), watch a held
symbol with an alert that fires at once (its ``alert`` reaches the session socket), fetch quotes.
Then a scrape of ``/metrics`` must show each metric family the issue names, with values that fit
the workload.
"""

from __future__ import annotations

import logging

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support.harness import serve, settings_for
from support.logs import LogWatch

Samples = dict[str, list[tuple[str, dict[str, str], float]]]

FAMILIES = (
    "marketpulse_http_request_duration_seconds",
    "marketpulse_ws_message_duration_seconds",
    "marketpulse_provider_call_duration_seconds",
    "marketpulse_provider_calls",
    "marketpulse_cache_hits",
    "marketpulse_cache_misses",
    "marketpulse_cache_errors",
    "marketpulse_cache_bypassed",
    "marketpulse_tick_errors",
    "marketpulse_analysis_runs",
    "marketpulse_analysis_duration_seconds",
    "marketpulse_alerts_evaluated",
    "marketpulse_alerts_fired",
    "marketpulse_revaluation_sweep_duration_seconds",
    "marketpulse_sessions_revalued",
    "marketpulse_connected_clients",
    "marketpulse_active_sessions",
    "marketpulse_event_loop_lag_seconds",
    "marketpulse_event_loop_lag_sample_seconds",
    "marketpulse_process_resident_memory_bytes",
    "marketpulse_performance_alerts",
)


ALWAYS_TRUE = {
    "symbol": "AAPL",
    "alert_type": "price_threshold",
    "comparison": "above",
    "threshold": 1,
}


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        out[family.name] = [(s.name, dict(s.labels), s.value) for s in family.samples]
    return out


def value(families: Samples, sample: str, **labels: str) -> float:
    """Sum of the samples called ``sample`` whose labels include ``labels`` (0 if none)."""
    return sum(
        v
        for family in families.values()
        for name, lab, v in family
        if name == sample and all(lab.get(k) == x for k, x in labels.items())
    )


async def workload(redis_url: str) -> tuple[Samples, Samples]:
    """Run the scripted workload on a real server; returns (scrape while the socket is open,
    scrape at the end)."""
    settings = settings_for(redis_url, market_interval=0.05, metric_delay="0")
    async with serve(settings) as server:
        sid, token, _ = await server.create_session({"AAPL": 10, "MSFT": 5})
        client = await server.connect(sid, token)
        try:
            await client.next("portfolio_update")
            r = await server.http.post("/api/symbols", json={"symbol": "AAPL"})
            assert r.status_code == 201, r.text
            r = await server.http.post("/api/alerts", json=ALWAYS_TRUE)
            assert r.status_code == 201, r.text
            await client.next("alert", symbol="AAPL")
            await client.send({"action": "analyze", "ticker": "AAPL"})
            await client.next("analysis_complete")
            await client.send({"action": "ping"})
            await client.next("pong")
            live = await scrape(server.http)
        finally:
            await client.ws.close()
            await client.closed
        for _ in range(2):
            assert (await server.http.get("/api/quotes/AAPL")).status_code == 200
        assert (await server.http.get("/api/sessions/nope")).status_code in (401, 404)
        assert (await server.http.get("/api/system")).status_code == 200
        after = await scrape(server.http)
    return live, after


async def test_metrics_after_a_workload_on_the_real_app(redis_url: str) -> None:
    live, families = await workload(redis_url)
    missing = [f for f in FAMILIES if f not in families]
    assert missing == []
    http = "marketpulse_http_request_duration_seconds_count"
    assert value(families, http, route="/api/sessions", method="POST", status="201") == 1
    assert value(families, http, route="/api/quotes/{symbol}", status="200") == 2
    assert value(families, http, route="/api/system", status="200") == 1
    assert value(families, "marketpulse_analysis_runs_total", event="started") >= 1
    assert value(families, "marketpulse_analysis_runs_total", event="completed") >= 1
    assert value(families, "marketpulse_analysis_duration_seconds_count") >= 1
    assert 0 < value(families, "marketpulse_analysis_duration_seconds_sum") < 60
    assert value(families, "marketpulse_revaluation_sweep_duration_seconds_count") >= 1
    assert value(families, "marketpulse_sessions_revalued_total") >= 1
    # the monitor evaluated AAPL's quotes against the alert; it fired once (it stays true)
    assert value(live, "marketpulse_alerts_evaluated_total") >= 1
    assert value(families, "marketpulse_alerts_fired_total") == 1
    assert value(families, "marketpulse_alerts_evaluated_total") >= 1
    assert value(live, "marketpulse_connected_clients", kind="session") == 1
    assert value(families, "marketpulse_connected_clients", kind="session") == 0
    assert value(families, "marketpulse_event_loop_lag_sample_seconds_count") >= 1
    assert 0 <= value(families, "marketpulse_event_loop_lag_seconds") < 5
    assert (
        10 * 1024**2 < value(families, "marketpulse_process_resident_memory_bytes") < 64 * 1024**3
    )


async def test_metrics_fed_by_the_fetcher_and_websocket(redis_url: str) -> None:
    live, families = await workload(redis_url)
    assert value(families, "marketpulse_provider_calls_total") >= 1
    assert value(families, "marketpulse_provider_call_duration_seconds_count") >= 1
    hits = value(families, "marketpulse_cache_hits_total")
    assert hits + value(families, "marketpulse_cache_misses_total") >= 2
    assert value(families, "marketpulse_cache_errors_total") == 0  # a healthy cache Redis
    assert value(families, "marketpulse_ws_message_duration_seconds_count", direction="in") >= 1
    assert value(families, "marketpulse_ws_message_duration_seconds_count", direction="out") >= 3
    assert value(live, "marketpulse_active_sessions") >= 1


async def test_a_crossed_limit_is_logged_shown_in_system_and_counted(redis_url: str) -> None:
    """A 1 MB memory limit is crossed by the first loop-lag sample of the real app: the warning is
    logged, ``/api/system`` lists it, and ``performance_alerts_total{kind="memory"}`` counts it
    once (a limit fires once per crossing)."""
    warned = LogWatch(
        "marketpulse.observability.health",
        logging.WARNING,
        lambda r: r.getMessage().startswith("health warning:"),
    )
    with warned as seen:
        async with serve(settings_for(redis_url, perf_memory_mb=1.0)) as server:
            await seen.until(lambda: bool(seen.records), within=10)
            body = (await server.http.get("/api/system")).json()
            families = await scrape(server.http)
    assert seen.records[0].levelno == logging.WARNING
    assert "memory of rss" in seen.records[0].getMessage()
    [warning] = [w for w in body["health_warnings"] if w["kind"] == "memory"]
    assert warning["type"] == "health_warning"
    assert warning["limit"] == 1.0 and warning["value"] > 1.0
    assert body["limits"]["memory_mb"] == 1.0
    assert value(families, "marketpulse_performance_alerts_total", kind="memory") == 1
