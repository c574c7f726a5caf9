"""The fetch layer's overhead on top of a provider that answers instantly.

Baseline (same run): calling the provider directly. Measured: ``DataFetcher.fetch_batch_data``
with the full policy (breaker, token bucket with a huge rate, timeout, validation), without and
with the Redis cache (misses: a new tick each round). Prints one JSON object with ratios.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from marketpulse.errors import PermanentSourceError
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.market.cache import CacheManager
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.quotes import Bar, StockData

N_SYMBOLS, ROUNDS = 200, 20
STAMP = datetime(2026, 1, 2, tzinfo=UTC)


class Instant:
    """A tick provider that answers at once (no I/O)."""

    name = "instant"
    live = False

    async def quote(self, symbol: str, tick: int) -> StockData:
        p = 100.0 + tick % 7
        return StockData(symbol=symbol, price=p, volume=1, timestamp=STAMP, high=p, low=p,
                         open=p, close=p, source=self.name)  # fmt: skip

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        raise PermanentSourceError("none")


async def per_round(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for r in range(ROUNDS):
        await fn(r)
    return (time.perf_counter() - start) / ROUNDS


async def run(url: str) -> dict[str, object]:
    symbols = [f"F{i}" for i in range(N_SYMBOLS)]
    provider = Instant()
    policy = FetchPolicy(rate_per_s=1e9, burst=10**9)

    async def direct(r: int) -> None:
        await asyncio.gather(*(provider.quote(s, r) for s in symbols))

    bare = DataFetcher([provider], clock=ManualClock(), policy=policy)
    redis = RedisClient.from_url(url)
    cached = DataFetcher([provider], cache=CacheManager(redis=redis), clock=ManualClock(),
                         policy=policy)  # fmt: skip
    base = await per_round(direct)
    layer = await per_round(lambda r: bare.fetch_batch_data(symbols, tick=r))
    with_cache = await per_round(lambda r: cached.fetch_batch_data(symbols, tick=1000 + r))
    hits = await per_round(lambda r: cached.fetch_batch_data(symbols, tick=1000))
    await redis.aclose()
    return {
        "bench": "fetch_overhead",
        "symbols": N_SYMBOLS,
        "rounds": ROUNDS,
        "direct_batch_ms": round(base * 1e3, 3),
        "fetcher_batch_ms": round(layer * 1e3, 3),
        "fetcher_cache_miss_batch_ms": round(with_cache * 1e3, 3),
        "fetcher_cache_hit_batch_ms": round(hits * 1e3, 3),
        "overhead_per_quote_us": round((layer - base) / N_SYMBOLS * 1e6, 2),
        "ratio_fetcher_vs_direct": round(layer / base, 2),
        "ratio_cache_miss_vs_direct": round(with_cache / base, 2),
        "ratio_cache_hit_vs_direct": round(hits / base, 2),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), durable=False)
        with server.running():
            print(json.dumps(asyncio.run(run(server.url))))


if __name__ == "__main__":
    main()
