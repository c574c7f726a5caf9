"""The service runs as the production ACL user of ``docs/deploy.md`` (``infra/redis/acl.py``):
a full workload (sessions, analyses, revaluations, alerts fired and delivered, the monitor, the
quote cache, every socket) works with no command refused, while ``FLUSHALL``, ``CONFIG``,
``KEYS`` and keys outside ``mp:`` are refused to that user.

Refusals a service loop swallows (the quote cache is best effort) would not fail the workload,
so the test reads the server's ``ACL LOG``, which records every refusal, and requires it empty.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import websockets

from marketpulse.infra.redis import acl
from marketpulse.infra.redis.embedded import EmbeddedRedis
from support.harness import Server, serve, settings_for

USER = "marketpulse-test"
DEPLOY_MD = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
ALWAYS_TRUE = {
    "symbol": "AAPL",
    "alert_type": "price_threshold",
    "comparison": "above",
    "threshold": 1,
}


@pytest.fixture
def admin(own_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    """The server's default user (the test's own server: the ACL user dies with it)."""
    client = redis.Redis.from_url(own_redis.url)
    try:
        yield client
    finally:
        client.close()


def _command(client: redis.Redis, *args: str) -> Any:
    """redis-py's ``execute_command``, which its annotations leave untyped."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _commandstats(admin: redis.Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def _workload(server: Server) -> None:
    http = server.http
    sid, token, _ = await server.create_session({"AAPL": 10, "MSFT": 5})
    auth = {"Authorization": f"Bearer {token}"}
    client = await server.connect(sid, token)
    async with (
        websockets.connect(f"{server.ws_base}/ws/alerts") as alerts,
        websockets.connect(f"{server.ws_base}/ws/dashboard") as dashboard,
    ):
        await dashboard.recv()  # its system frame
        await client.next("portfolio_update")  # a revaluation by the loop
        assert (await http.post("/api/symbols", json={"symbol": "AAPL"})).status_code == 201
        r = await http.post("/api/alerts", json=ALWAYS_TRUE)
        assert r.status_code == 201, r.text
        alert_id = r.json()["id"]
        await client.next("alert", symbol="AAPL")  # fired by the monitor, delivered
        assert '"AAPL"' in str(await alerts.recv())
        await client.send({"action": "analyze", "ticker": "AAPL"})
        await client.next("analysis_complete")
        await client.send({"action": "analyze", "ticker": "MSFT"})
        await client.next("analysis_started", ticker="MSFT")
        await client.send({"action": "cancel"})
        await client.send({"action": "ping"})
        await client.next("pong")
    path = f"/api/sessions/{sid}"
    r = await http.put(f"{path}/holdings", json={"holdings": {"AAPL": 3}}, headers=auth)
    assert r.status_code == 200, r.text
    r = await http.put(f"{path}/base_currency", json={"base_currency": "EUR"}, headers=auth)
    assert r.status_code == 200, r.text
    assert (await http.get(path, headers=auth)).status_code == 200
    for url in ("/api/alerts", "/api/alerts/history", "/api/symbols", "/api/quotes/AAPL"):
        assert (await http.get(url)).status_code == 200, url
    for url in ("/api/system", "/metrics", "/readyz"):
        assert (await http.get(url)).status_code == 200, url
    assert (await http.delete(f"/api/alerts/{alert_id}")).status_code == 204
    assert (await http.delete("/api/symbols/AAPL")).status_code == 204
    assert (await http.delete(path, headers=auth)).status_code == 204
    assert await client.closed == 4404


def test_deploy_md_quotes_the_rule() -> None:
    assert acl.rule() in DEPLOY_MD.read_text()


async def test_the_service_runs_as_the_acl_user_which_cannot_flush_configure_or_scan(
    own_redis: EmbeddedRedis, admin: redis.Redis
) -> None:
    password = secrets.token_urlsafe(24)
    _command(admin, *acl.setuser_command(USER, password))
    _command(admin, "ACL", "LOG", "RESET")
    admin.config_resetstat()
    url = f"redis://{USER}:{password}@127.0.0.1:{own_redis.port}/0"
    settings = settings_for(
        url, market_interval=0.05, metric_delay="0", run_reclaim_s=0.5, alert_reclaim_s=0.5
    )
    async with serve(settings) as server:
        await _workload(server)
    used = _commandstats(admin)
    refused = _command(admin, "ACL", "LOG")
    assert refused == [], f"refused: {refused}; commands used: {used}"

    user = redis.Redis.from_url(url)
    try:
        for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("SET", "x", "1")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                _command(user, *command)
        user.set("mp:acl-test", "1")  # its own keys it may write
    finally:
        user.close()
