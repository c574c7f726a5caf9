"""What portfolio alerts add to the revaluation sweep: N sessions (default 20,000) on a private
redis-server swept by the real ValuationLoop, without a watcher (the baseline, same run), with
the watcher and no portfolio alert anywhere (one pipelined HGETALL per session: the cost every
deployment pays), and with a drawdown and a drift alert on a share of the sessions (default
10 %: track read, track script, two alert_transition.lua calls each). Warm sweeps (holdings
cached), the median of 3 each.

    uv run --frozen python bench/bench_portfolio_alerts.py [N] [SHARE]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from marketpulse.alerts.portfolio import PortfolioAlerts
from marketpulse.alerts.portfolio_rules import PortfolioAlert
from marketpulse.alerts.portfolio_store import PortfolioAlertStore
from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.view import Market
from marketpulse.sessions.portfolio import canonical_holdings, value
from marketpulse.sessions.store import SCRIPTS, SessionStore, hash_token
from marketpulse.sessions.valuation import CHUNK, ValuationLoop

UNIVERSE = ["AAPL", "MSFT", "GOOGL", "IBM", "AMZN", "NVDA", "TSLA", "META", "JPM", "XOM"]
NOW = "2026-01-02T00:00:00.000Z"
ROUNDS = 3


async def _load(client: RedisClient, market: Market, n: int) -> None:
    redis = client.redis
    prices0 = await market.prices(UNIVERSE, 0)
    create = SCRIPTS.register(redis, "session_create")
    for start in range(0, n, CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + CHUNK)):
                h = {UNIVERSE[(i + k) % len(UNIVERSE)]: float(10 + k) for k in range(3)}
                val = value(h, prices0, 0)
                sid = f"user-{i}"
                pipe.zadd(keys.session_index(partitions.partition_of(sid)), {sid: 0})
                args: list[str | int] = [sid, hash_token("t"), canonical_holdings(h)]
                args += [val.total_text, val.prices_text, NOW, 0, 86400, val.base_currency]
                args += [val.currencies_text, val.fx_text, val.flags_text]
                await create(keys=SessionStore.keys_for(sid), client=pipe, args=args)
            await pipe.execute()


async def _sweeps(loop: ValuationLoop, first_tick: int) -> tuple[float, int]:
    await loop.sweep(first_tick)  # warm the holdings cache
    times = []
    for r in range(ROUNDS):
        t = time.perf_counter()
        await loop.sweep(first_tick + 1 + r)
        times.append(time.perf_counter() - t)
    return statistics.median(times), first_tick + 1 + ROUNDS


async def main(n: int, share: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d, EmbeddedRedis(Path(d), durable=False).running() as rs:
        client = RedisClient.from_url(rs.url)
        market = Market(SimulatedSource(seed=42))
        await _load(client, market, n)
        store = SessionStore(client, ttl_s=86400)
        watcher = PortfolioAlerts(PortfolioAlertStore(client))
        base, tick = await _sweeps(ValuationLoop(store, market, interval_s=30), 1)
        idle, tick = await _sweeps(ValuationLoop(store, market, interval_s=30, watch=watcher), tick)
        watched = int(n * share)
        for i in range(watched):
            sid = f"user-{i}"
            held = {UNIVERSE[(i + k) % len(UNIVERSE)]: 10.0 + k for k in range(3)}
            targets = dict.fromkeys(held, 30.0)
            for alert in (
                PortfolioAlert(id="dd", kind="drawdown_from_peak", threshold=10),
                PortfolioAlert(id="drift", kind="drift", targets=targets, band=5),
            ):
                await watcher.put(sid, alert, held, reset=False)
        busy, tick = await _sweeps(ValuationLoop(store, market, interval_s=30, watch=watcher), tick)
        await client.aclose()
    return {
        "bench": "portfolio_alerts",
        "sessions": n,
        "sessions_with_alerts": watched,
        "baseline_sweep_s": round(base, 4),
        "no_alerts_sweep_s": round(idle, 4),
        "with_alerts_sweep_s": round(busy, 4),
        "no_alerts_ratio": round(idle / base, 3),
        "with_alerts_ratio": round(busy / base, 3),
        "fires": watcher.fired,
    }


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    part = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    print(json.dumps(asyncio.run(main(size, part))))
