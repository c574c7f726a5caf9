"""Provider calls a week of live monitoring costs, with market hours against without.

The monitor (``MonitorService``, in memory) watches a mixed watchlist (AAPL on NYSE/NASDAQ
hours, TCS.NS on NSE's; calls are per symbol, so a longer list scales them) through the week
of Monday 2026-11-23 00:00 UTC to Monday 2026-11-30 00:00 UTC on a manual wall clock: NSE is
closed on Tuesday 24 (Guru Nanak Jayanti), NYSE on Thursday 26 (Thanksgiving) and it closes
at 13:00 New York on Friday 27. The provider is a counting fake that answers at once.
Baseline (same run): the same monitor without calendars.

Two poll intervals: 5 s (``MARKETPULSE_MONITOR_INTERVAL``; without a cache, as
``StockMonitor`` runs by default, every poll of a symbol is a call) and 300 s (the service
puts the quote cache in front, ``MARKETPULSE_CACHE_TTL`` = 300 s, so at most one call per
symbol per 300 s reaches the provider). Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.monitor import MonitorService
from marketpulse.errors import PermanentSourceError
from marketpulse.market.calendar import Calendars
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.quotes import Bar, StockData

WATCHLIST = ("AAPL", "TCS.NS")
START = datetime(2026, 11, 23, tzinfo=UTC)
DAYS = 7


class Wall:
    def __init__(self) -> None:
        self.t = START.timestamp()

    def now(self) -> float:
        return self.t


class Counting:
    """A live provider that answers at once and counts its calls."""

    name = "counting"
    live = True

    def __init__(self, wall: Wall) -> None:
        self.wall = wall
        self.calls = 0

    async def quote(self, symbol: str, tick: int) -> StockData:
        self.calls += 1
        p = 100.0 + self.calls % 7
        stamp = datetime.fromtimestamp(self.wall.t, UTC)
        return StockData(symbol=symbol, price=p, volume=1, timestamp=stamp, high=p, low=p,
                         open=p, close=p, previous_close=100.0, source=self.name)  # fmt: skip

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        raise PermanentSourceError("none")


async def week(interval_s: float, calendars: Calendars | None) -> tuple[int, float]:
    """(provider calls, seconds of CPU the simulated week took)."""
    wall = Wall()
    provider = Counting(wall)
    fetcher = DataFetcher([provider], policy=FetchPolicy(rate_per_s=1e9, burst=10**9),
                          wall=wall.now, calendars=calendars)  # fmt: skip
    monitor = MonitorService(fetcher, AlertManager.in_memory(notifiers=[]), interval_s=interval_s)
    for symbol in WATCHLIST:
        await monitor.add_symbol(symbol)
    end = (START + timedelta(days=DAYS)).timestamp()
    began = time.process_time()
    while wall.t < end:
        await monitor.run_once()
        wall.t += interval_s
    return provider.calls, time.process_time() - began


async def run() -> dict[str, object]:
    calendars = Calendars()
    out: dict[str, object] = {"bench": "calendar_polls", "symbols": list(WATCHLIST),
                              "from": START.date().isoformat(), "days": DAYS}  # fmt: skip
    for interval_s in (5.0, 300.0):
        baseline, _ = await week(interval_s, None)
        gated, cpu = await week(interval_s, calendars)
        out[f"every_{int(interval_s)}s"] = {
            "polls_per_symbol": int(DAYS * 86400 / interval_s),
            "calls_without_calendars": baseline,
            "calls_with_calendars": gated,
            "calls_saved": baseline - gated,
            "saved_ratio": round(1 - gated / baseline, 4),
            "calls_saved_per_symbol_per_day": round((baseline - gated) / len(WATCHLIST) / DAYS, 1),
            "simulated_week_cpu_s": round(cpu, 2),
        }
    return out


def main() -> None:
    print(json.dumps(asyncio.run(run())))


if __name__ == "__main__":
    main()
