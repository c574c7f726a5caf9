"""What the split guard adds to a quote's evaluation, against a private redis-server.

Each quote of ``check_alerts`` first goes through ``SplitGuard.before`` (alerts/split_guard.py):
one script call recording the observation's price (``split_observe.lua``), and, only for a
quote that confirms a split, the re-base. This measures the common case, quotes without a
split, on 50 symbols with 10 price alerts each that no quote crosses:

- ``guarded``: the engine as built;
- ``unguarded``: the same engine with the guard's ``before`` returning the quote untouched
  (the cost of the engine before splits were handled), in alternating rounds of the same run.

Prints one JSON object: the per-quote p50/mean of each (µs) and their ratio.

    uv run --frozen python bench/bench_split_guard.py [QUOTES]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvloop

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.market.quotes import StockData

T0 = datetime(2026, 1, 5, tzinfo=UTC)
SYMBOLS = [f"S{i:02d}" for i in range(50)]
ROUNDS = 10


def quote(symbol: str, i: int) -> StockData:
    price = 100.0 + (i % 7)  # between the thresholds: nothing fires, nothing changes
    return StockData(
        symbol=symbol, price=price, volume=1000 + i % 13, timestamp=T0 + timedelta(seconds=i),
        high=price, low=price, open=price, close=price, source="bench",
    )  # fmt: skip


async def passthrough(quote: StockData, obs: int) -> StockData:
    return quote


async def rounds(mgrs: dict[str, AlertManager], n: int) -> dict[str, list[float]]:
    per: dict[str, list[float]] = {k: [] for k in mgrs}
    obs = 0
    for r in range(ROUNDS):
        for name in sorted(mgrs, reverse=bool(r % 2)):  # alternate which goes first
            mgr = mgrs[name]
            for _ in range(n // ROUNDS):
                obs += 1
                symbol = SYMBOLS[obs % len(SYMBOLS)]
                q = quote(symbol, obs)
                t0 = time.perf_counter()
                await mgr.check_alerts(q, obs=obs)
                per[name].append((time.perf_counter() - t0) * 1e6)
    return per


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), durable=False)
        with server.running():
            redis = RedisClient.from_url(server.url)
            try:
                store = RedisAlertStore(redis)
                mgrs = {"guarded": AlertManager(store, []), "unguarded": AlertManager(store, [])}
                mgrs["unguarded"].splits.before = passthrough  # type: ignore[method-assign]
                for s in SYMBOLS:
                    for k in range(5):
                        for cmp, t in (("above", 200.0 + k), ("below", 50.0 - k)):
                            await mgrs["guarded"].add_alert(
                                AlertCondition(symbol=s, alert_type=AlertType.PRICE_THRESHOLD,
                                               threshold=t, comparison=cmp)
                            )  # fmt: skip
                await mgrs["unguarded"].sync()
                await rounds(mgrs, 1000)  # warm-up: scripts loaded, the index settled
                per = await rounds(mgrs, n)
            finally:
                await redis.aclose()
    g, u = per["guarded"], per["unguarded"]
    result = {
        "bench": "split_guard",
        "quotes": len(g),
        "symbols": len(SYMBOLS),
        "alerts": len(SYMBOLS) * 10,
        "guarded_p50_us": round(statistics.median(g), 1),
        "unguarded_p50_us": round(statistics.median(u), 1),
        "guarded_mean_us": round(statistics.fmean(g), 1),
        "unguarded_mean_us": round(statistics.fmean(u), 1),
        "guarded_over_unguarded_p50": round(statistics.median(g) / statistics.median(u), 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4000))
