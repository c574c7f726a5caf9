"""Guarantee 11 with real processes: an alert fired while its webhook is down, the service
SIGKILLed before it could deliver, is delivered once the receiver is up and a service runs
again on the same Redis: the receiver sees exactly one idempotency key, the fire's id.

The service (``python -m marketpulse serve``, ``support/processes.py``) runs the simulated
market with a short tick and reclaim bound; the alert is ``AAPL price above 0``, true at every
observation, so it fires once at the first tick after it is added and never again. The webhook
URL points at a loopback port where nothing listens until the test starts the receiver there.
Every wait is for a log line or a request under a deadline.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
from redis.asyncio import Redis

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.embedded import free_port
from support.processes import Proc, start_serve
from support.webhook import WebhookReceiver

DEADLINE = 30.0


async def test_a_fire_the_service_died_before_delivering_is_delivered_after_a_restart(
    redis_url: str, redis_client: Redis, tmp_path: Path, procs: list[Proc]
) -> None:
    port, hook_port = free_port(), free_port()
    env = {
        "MARKETPULSE_REDIS_URL": redis_url,
        "MARKETPULSE_DATA_SOURCE": "simulated",
        "MARKETPULSE_MARKET_INTERVAL": "0.5",
        "MARKETPULSE_WATCHLIST": "AAPL",
        "MARKETPULSE_METRIC_DELAY": "0",
        "MARKETPULSE_ALERT_RECLAIM_S": "1",
        "MARKETPULSE_WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hook",  # refused for now
        "MARKETPULSE_LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "service.log"
    base = f"http://127.0.0.1:{port}"
    first = await start_serve(env, port, log_path)
    procs.append(first)
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        r = await http.post(
            "/api/alerts",
            json={"symbol": "AAPL", "alert_type": "price_threshold", "threshold": 0,
                  "comparison": "above"},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        await first.wait_for_line("alert delivery on webhook failed for fire", DEADLINE)
        [row] = (await http.get("/api/alerts/history")).json()["history"]
    fire_id = row["id"]
    assert "webhook" not in row["deliveries"]  # decided and recorded, not delivered
    await first.kill(signal.SIGKILL)

    receiver = WebhookReceiver()
    try:
        await receiver.start(hook_port)
        second = await start_serve(env, port, log_path)
        procs.append(second)
        ready = time.monotonic()
        async with asyncio.timeout(DEADLINE):
            await receiver.delivered.get()
        took = time.monotonic() - ready
        # a graceful stop lets the delivery in flight record itself and acknowledge
        await second.kill(signal.SIGTERM)
        await second.wait_for_line("Application shutdown complete", DEADLINE)
    finally:
        await receiver.aclose()
    assert set(receiver.keys) == {fire_id}  # one distinct key: the fire id
    assert set(receiver.ids) == {fire_id}
    delivered = await redis_client.hgetall(keys.alert_deliveries(fire_id))
    assert b"webhook" in delivered
    pending = await redis_client.xpending(keys.ALERT_OUTBOX, keys.alert_delivery_group("webhook"))
    assert pending["pending"] == 0
    assert await redis_client.xlen(keys.ALERT_HISTORY) == 1  # fired once, across both runs
    print(
        f"webhook got fire {fire_id} {len(receiver.keys)} time(s) "
        f"({len(receiver.keys) - 1} repeat(s) with the same key), {took:.2f} s after the "
        f"restarted service was ready"
    )
