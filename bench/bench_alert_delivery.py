"""The latency the alert outbox adds to a delivery, against a private redis-server.

For each of N fires (one alert re-armed and fired again each round): the time from calling
``check_alerts`` until the channel's ``send`` runs.

- ``inline``: the channel is sent to right after ``check_alerts`` returns (what the engine
  did before the outbox; the decision script still writes the outbox and history, so this is
  the decision plus a direct send).
- ``outbox``: the delivery loop (``run_deliveries``) is running and sends it after reading the
  outbox (XREADGROUP wakes on the XADD), then records and acknowledges it.

Prints one JSON object with p50/p99 of each (ms) and the ratio of the p50s, same run.

    uv run --frozen python bench/bench_alert_delivery.py [N]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvloop

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.market.quotes import StockData

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def quote(i: int, price: float) -> StockData:
    return StockData(
        symbol="AAPL", price=price, volume=1, timestamp=T0 + timedelta(seconds=i), high=price,
        low=price, open=price, close=price, source="bench",
    )  # fmt: skip


class Stamp:
    def __init__(self, name: str) -> None:
        self.name = name  # a channel of its own per measurement: its group starts empty
        self.got: asyncio.Queue[float] = asyncio.Queue()

    async def send(self, alert: FiredAlert) -> None:
        self.got.put_nowait(time.perf_counter())


async def measure(redis: RedisClient, n: int, mode: str, tag: str) -> list[float]:
    stamp = Stamp(f"stamp-{tag}")
    mgr = AlertManager(RedisAlertStore(redis), [stamp])
    alert = AlertCondition(
        symbol="AAPL", alert_type=AlertType.PRICE_THRESHOLD, threshold=100, comparison="above"
    )
    await mgr.add_alert(alert)
    stop = asyncio.Event()
    loop = asyncio.create_task(mgr.run_deliveries(stop)) if mode == "outbox" else None
    out: list[float] = []
    obs = 0
    try:
        for _ in range(n):
            obs += 1
            await mgr.check_alerts(quote(obs, 90), obs=obs)  # re-arm
            obs += 1
            t0 = time.perf_counter()
            [fired] = await mgr.check_alerts(quote(obs, 110), obs=obs)
            if mode == "inline":
                await stamp.send(fired)
            async with asyncio.timeout(10):
                t1 = await stamp.got.get()
            out.append((t1 - t0) * 1000)
    finally:
        stop.set()
        if loop is not None:
            await loop
    return out


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), durable=False)
        with server.running():
            redis = RedisClient.from_url(server.url)
            try:
                await measure(redis, 50, "outbox", "warm-up")  # scripts loaded
                inline = await measure(redis, n, "inline", "inline")
                outbox = await measure(redis, n, "outbox", "outbox")
            finally:
                await redis.aclose()
    result = {
        "bench": "alert_delivery",
        "fires": n,
        "inline_p50_ms": round(pct(inline, 0.5), 3),
        "inline_p99_ms": round(pct(inline, 0.99), 3),
        "outbox_p50_ms": round(pct(outbox, 0.5), 3),
        "outbox_p99_ms": round(pct(outbox, 0.99), 3),
        "outbox_over_inline_p50": round(pct(outbox, 0.5) / pct(inline, 0.5), 2),
        "added_p50_ms": round(pct(outbox, 0.5) - pct(inline, 0.5), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
