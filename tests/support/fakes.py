"""Fakes of what we own, shared by the test modules (the manual market clock is
``marketpulse.market.clock.ManualClock``, shipped with the library)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from marketpulse.alerts.event import FiredAlert
from marketpulse.errors import PermanentSourceError
from marketpulse.market.quotes import Bar, StockData


class FakeTime:
    """A monotonic clock and sleep we own: sleeping advances the clock at once and is recorded."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)  # wait-ok: yields to the loop, waits for nothing


class Queued:
    """A notifier channel that queues every fired alert it is sent, for a test to await."""

    name = "queue"

    def __init__(self) -> None:
        self.q: asyncio.Queue[FiredAlert] = asyncio.Queue()

    async def send(self, alert: FiredAlert) -> None:
        self.q.put_nowait(alert)


class ManualWall:
    """A wall clock (epoch seconds) a test sets by hand; ``utc()`` is the same instant."""

    def __init__(self, start: datetime) -> None:
        self.t = start.timestamp()

    def now(self) -> float:
        return self.t

    def set(self, when: datetime) -> None:
        self.t = when.timestamp()

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


class CountingLive:
    """A live quote provider of our own that counts its calls: each quote is stamped with the
    wall clock's time, its price rises by 0.1 per call, its previous close is ``previous``."""

    name = "counting"
    live = True

    def __init__(self, wall: ManualWall, previous: float = 100.0) -> None:
        self.wall = wall
        self.previous = previous
        self.calls: list[tuple[str, datetime]] = []

    async def quote(self, symbol: str, tick: int) -> StockData:
        self.calls.append((symbol, self.wall.utc()))
        price = self.previous + 0.1 * len(self.calls)
        return StockData(symbol=symbol, price=price, volume=1_000, timestamp=self.wall.utc(),
                         high=price, low=price, open=price, close=self.previous,
                         previous_close=self.previous, source=self.name)  # fmt: skip

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        raise PermanentSourceError(f"{self.name}: no history")

    def calls_of(self, symbol: str) -> list[datetime]:
        return [at for s, at in self.calls if s == symbol]
