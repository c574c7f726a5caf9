"""200 symbols at once through yfinance in its thread pool: the rate holds, the loop runs."""

from __future__ import annotations

import asyncio

from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers.yahoo import YahooProvider
from support.market_server import MarketServer, redirecting_session

RATE, BURST = 150.0, 10


async def test_200_symbols_respect_the_rate_and_never_block_the_loop() -> None:
    server = MarketServer()
    server.any_chart_is = "yahoo_chart_MSFT_1d_6mo_2025-10-29.json"
    await server.start()
    yahoo = YahooProvider(session=redirecting_session(server.url), max_workers=8)
    f = DataFetcher([yahoo], clock=ManualClock(), policy=FetchPolicy(rate_per_s=RATE, burst=BURST))
    # The grant times as the bucket took them: a clock read in the provider call can lag its
    # grant by a GIL switch (5 ms) while yfinance's threads parse, which once made 11 entries
    # fall inside 6.4 ms, where the bucket cannot grant more than 10.96.
    granted: list[float] = []
    (guard,) = f.guards
    original = guard.bucket.acquire

    async def recording_acquire() -> float:
        at = await original()
        granted.append(at)
        return at

    guard.bucket.acquire = recording_acquire  # type: ignore[method-assign]
    beats = 0
    stop = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal beats
        while not stop.is_set():
            beats += 1
            await asyncio.sleep(0.005)  # wait-ok: the heartbeat being measured ticks every 5 ms

    symbols = [f"SYM{i}" for i in range(200)]
    try:
        async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
            tg.create_task(heartbeat())
            got = await f.fetch_batch_data(symbols)
            stop.set()
    finally:
        await f.close()
        await server.stop()
    assert len(got) == 200
    assert len(granted) == 200  # one grant per call: no retries against the local server
    # token bucket: any window of t seconds admits at most BURST + RATE * t calls
    for i, start in enumerate(granted):
        for j in range(i, len(granted)):
            assert j - i + 1 <= BURST + RATE * (granted[j] - start) + 1e-6
    # the batch lasts at least (200 - BURST) / RATE s ≈ 1.3 s: a free loop beats many times
    assert beats >= 50
