"""Batch quote-cache throughput: pipelined (one MGET / one pipeline) vs one round trip per symbol.

Prints one JSON object; ``speedup_read`` / ``speedup_write`` are ratios against the per-symbol
baseline measured in the same run, on a private redis-server.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.market.cache import CacheManager
from marketpulse.market.quotes import StockData

N_SYMBOLS, ROUNDS = 200, 30


def quote(symbol: str, i: int) -> StockData:
    p = 100.0 + i
    return StockData(symbol=symbol, price=p, volume=1000, timestamp=datetime.now(UTC),
                     high=p + 1, low=p - 1, open=p, close=p, source="bench")  # fmt: skip


async def run(url: str) -> dict[str, object]:
    redis = RedisClient.from_url(url)
    cache = CacheManager(redis=redis)
    symbols = [f"B{i}" for i in range(N_SYMBOLS)]
    quotes = {s: quote(s, i) for i, s in enumerate(symbols)}

    async def timed(fn) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        for _ in range(ROUNDS):
            await fn()
        return (time.perf_counter() - start) / ROUNDS

    async def write_each() -> None:
        for s, q in quotes.items():
            await cache.set_stock_data(s, q)

    async def read_each() -> None:
        for s in symbols:
            await cache.get_stock_data(s)

    w_each = await timed(write_each)
    w_pipe = await timed(lambda: cache.set_many(quotes, 300))
    r_each = await timed(read_each)
    r_pipe = await timed(lambda: cache.get_many(symbols))
    await redis.aclose()
    return {
        "bench": "quote_cache",
        "symbols": N_SYMBOLS,
        "rounds": ROUNDS,
        "write_per_symbol_ms": round(w_each * 1e3, 3),
        "write_pipelined_ms": round(w_pipe * 1e3, 3),
        "read_per_symbol_ms": round(r_each * 1e3, 3),
        "read_mget_ms": round(r_pipe * 1e3, 3),
        "read_quotes_per_s": round(N_SYMBOLS / r_pipe),
        "speedup_write": round(w_each / w_pipe, 2),
        "speedup_read": round(r_each / r_pipe, 2),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), durable=False)
        with server.running():
            print(json.dumps(asyncio.run(run(server.url))))


if __name__ == "__main__":
    main()
