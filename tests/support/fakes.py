"""Fakes of what we own, shared by the test modules (the manual market clock is
``marketpulse.market.clock.ManualClock``, shipped with the library)."""

from __future__ import annotations

import asyncio

from marketpulse.alerts.event import FiredAlert


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
