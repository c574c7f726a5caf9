"""200 symbols at once through yfinance in its thread pool: the rate holds, the loop runs."""

from __future__ import annotations

import asyncio
import time

from market_http import MarketServer, redirecting_session
from marketpulse.adapters.market.yahoo import YahooProvider
from marketpulse.services.clock import ManualClock
from marketpulse.services.fetcher import DataFetcher
from marketpulse.services.provider_guard import FetchPolicy

RATE, BURST = 150.0, 10


async def test_200_symbols_respect_the_rate_and_never_block_the_loop() -> None:
    server = MarketServer()
    server.any_chart_is = "yahoo_chart_MSFT_1d_6mo_2025-10-29.json"
    await server.start()
    yahoo = YahooProvider(session=redirecting_session(server.url), max_workers=8)
    f = DataFetcher([yahoo], clock=ManualClock(), policy=FetchPolicy(rate_per_s=RATE, burst=BURST))
    entered: list[float] = []
    original = yahoo.quote

    async def recording_quote(symbol: str, tick: int):  # type: ignore[no-untyped-def]
        entered.append(time.monotonic())
        return await original(symbol, tick)

    yahoo.quote = recording_quote  # type: ignore[method-assign]
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
    entered.sort()
    # token bucket: any window of t seconds admits at most BURST + RATE * t calls
    for i, start in enumerate(entered):
        for j in range(i, len(entered)):
            assert j - i + 1 <= BURST + RATE * (entered[j] - start) + 1e-6
    # the batch lasts at least (200 - BURST) / RATE s ≈ 1.3 s: a free loop beats many times
    assert beats >= 50
