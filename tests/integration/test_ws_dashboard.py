"""``/ws/dashboard`` on the real app (``create_app`` under uvicorn) and a real Redis.

The simulated market moves every 0.1 s and the System report is sent every 0.1 s, so each wait
below is for a message (under ``asyncio.timeout``), never a sleep.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.typing import Origin

from support.harness import Client, Server, serve, settings_for

FAST = {"market_interval": 0.1, "monitor_interval": 0.1, "system_interval": 0.1}


async def dashboard(server: Server, **kw: Any) -> Client:
    ws = await websockets.connect(f"{server.ws_base}/ws/dashboard", **kw)
    client = Client(ws)
    client.start()
    return client


async def watch(server: Server, *symbols: str) -> None:
    for symbol in symbols:
        r = await server.http.post("/api/symbols", json={"symbol": symbol})
        assert r.status_code == 201, r.text


def gauge(text: str, kind: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "marketpulse_connected_clients" and s.labels.get("kind") == kind:
                return s.value
    raise AssertionError(f"no connected_clients{{kind={kind!r}}}")


async def test_snapshot_then_quotes_as_the_market_moves_and_system_reports(
    redis_url: str,
) -> None:
    async with serve(settings_for(redis_url, **FAST)) as server:
        await watch(server, "AAPL", "MSFT")
        client = await dashboard(server)
        try:
            async with asyncio.timeout(10):
                first_system = await client.next("system")
                first = await client.next("quote", symbol="AAPL")
                await client.next("quote", symbol="MSFT")
                # the snapshot: the report, then a quote per monitored symbol, nothing between
                snapshot = [(m["type"], m.get("symbol")) for m in client.log[:3]]
                assert snapshot == [("system", None), ("quote", "AAPL"), ("quote", "MSFT")]
                moved = first
                while moved["timestamp"] == first["timestamp"]:
                    moved = await client.next("quote", symbol="AAPL")
                later_system = await client.next("system")
        finally:
            await client.close()
    assert moved["price"] > 0 and moved["source"] == "simulated" and moved["stale"] is False
    assert moved["timestamp"] > first["timestamp"]  # ISO dates: the market moved forward
    assert {"previous_close", "volume", "age_s"} <= moved.keys()
    for report in (first_system, later_system):
        assert report["redis"]["ok"] is True
        assert report["providers"][0]["name"] == "simulated"
        assert report["connected_clients"]["dashboard"] == 1
        assert {"active_sessions", "loop_lag_ms", "rss_bytes", "health_warnings"} <= set(report)
        assert report["asyncio_tasks"] > 0


async def test_bad_input_gets_an_error_and_the_socket_stays_open(redis_url: str) -> None:
    async with serve(settings_for(redis_url, **FAST)) as server:
        client = await dashboard(server)
        try:
            async with asyncio.timeout(10):
                await client.next("system")
                await client.send("not json")
                assert (await client.next("error"))["code"] == "bad_json"
                await client.send({"action": "analyze", "ticker": "AAPL"})
                assert (await client.next("error"))["code"] == "unknown_action"
                await client.send(b"\x00\x01")
                assert (await client.next("error"))["code"] == "bad_message"
                await client.send({"action": "ping"})
                await client.next("pong")
                await client.next("system")  # still streaming
        finally:
            await client.close()


async def test_a_message_over_4_kib_closes_with_1009(redis_url: str) -> None:
    async with serve(settings_for(redis_url, **FAST)) as server:
        client = await dashboard(server)
        async with asyncio.timeout(10):
            await client.next("system")
            await client.send(json.dumps({"action": "ping", "pad": "x" * 5000}))
            assert await client.closed == 1009


async def test_a_foreign_origin_is_refused(redis_url: str) -> None:
    settings = settings_for(redis_url, allowed_origins=("http://dash.example",))
    async with asyncio.timeout(20), serve(settings) as server:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                f"{server.ws_base}/ws/dashboard",
                origin=Origin("http://evil.example"),
            )
        assert refused.value.response.status_code == 403
        allowed = await dashboard(server, origin="http://dash.example")
        await allowed.next("system")
        await allowed.close()


async def test_connected_clients_counts_dashboards_while_open(redis_url: str) -> None:
    async with serve(settings_for(redis_url, **FAST)) as server:
        alone = await dashboard(server)
        await alone.next("system")  # sent after the connection was counted
        scraped = (await server.http.get("/metrics")).text
        assert gauge(scraped, "dashboard") == 1
        observer = await dashboard(server)
        async with asyncio.timeout(10):
            await observer.next("system")
            await alone.close()
            while (await observer.next("system"))["connected_clients"]["dashboard"] != 1:
                pass  # the next reports, until the closed one is no longer counted
        await observer.close()
    # uvicorn's shutdown waits for every connection's handler, so their cleanup has run
    assert gauge(server.state["telemetry"].render().decode(), "dashboard") == 0
