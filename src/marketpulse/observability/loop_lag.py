"""Event-loop lag and process memory sampling.

Lag is how late the loop runs a callback that was ready: ``run_once()`` schedules one with
``call_soon`` and measures until it runs, so it never sleeps. ``run()`` also measures how late
its own periodic wake-up came (a blocked loop shows up there) and reports the larger of the two.
Each sample also reads the resident set size of this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from pathlib import Path
from typing import Protocol

STATM = Path("/proc/self/statm")


def resident_memory_bytes() -> int:
    """Current RSS from ``/proc/self/statm``; elsewhere the peak RSS from ``getrusage``."""
    try:
        fields = STATM.read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        # ru_maxrss is in KiB on Linux (bytes on macOS); a peak is a fair stand-in there.
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class LagSink(Protocol):
    """Where samples go (``Telemetry`` implements it)."""

    def loop_lag_observed(self, seconds: float) -> None: ...

    def memory_observed(self, rss_bytes: int) -> None: ...


class LoopLagMonitor:
    """Samples loop lag and RSS every ``interval_s`` seconds into a ``LagSink``."""

    def __init__(self, sink: LagSink, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError("loop lag interval must be positive")
        self.sink = sink
        self.interval_s = interval_s

    async def run_once(self, timer_overshoot_s: float = 0.0) -> float:
        """Take one sample; returns the lag in seconds that was recorded."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[float] = loop.create_future()
        scheduled = loop.time()

        def mark() -> None:
            if not ready.done():
                ready.set_result(loop.time())

        loop.call_soon(mark)
        ran = await ready
        lag = max(ran - scheduled, timer_overshoot_s, 0.0)
        self.sink.loop_lag_observed(lag)
        self.sink.memory_observed(resident_memory_bytes())
        return lag

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        overshoot = 0.0
        while not stop.is_set():
            await self.run_once(overshoot)
            due = loop.time() + self.interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
            overshoot = max(0.0, loop.time() - due)
