"""The market clock: which tick of the market is current.

The service's tick lives in Redis (``keys.MARKET_TICK``), advanced by the valuation loop; every
instance reads the same value. ``RedisTickClock`` is the one reader and writer of that key (and
of ``keys.MARKET_SNAPSHOT``, when the tick's revaluation finished). ``WallTickClock`` derives a
tick from elapsed wall time for standalone use (the seed's example), and ``ManualClock`` is the
fake that tests drive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient


class MarketClock(Protocol):
    """Source of the current market tick (a non-negative integer, never decreasing)."""

    async def tick(self) -> int: ...


class RedisTickClock:
    """The shared tick stored at ``keys.MARKET_TICK``; a missing key means tick 0. Every
    method raises ``RedisUnavailable`` when Redis fails."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def tick(self) -> int:
        """The current tick."""
        raw = await self._redis.call("GET", keys.MARKET_TICK)
        return 0 if raw is None else int(raw)

    async def advance(self) -> int:
        """Move the market one tick on (atomic: two leaders never get the same tick)."""
        return int(await self._redis.call("INCR", keys.MARKET_TICK))

    async def valued(self, tick: int, valued_at: str) -> None:
        """Record that every session was revalued at ``tick`` (the market snapshot)."""
        await self._redis.call("HSET", keys.MARKET_SNAPSHOT, "tick", tick, "valued_at", valued_at)


class WallTickClock:
    """Tick = whole intervals elapsed since construction (``now`` is injectable)."""

    def __init__(self, interval_s: float, now: Callable[[], float] = time.monotonic) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._interval_s = interval_s
        self._now = now
        self._start = now()

    async def tick(self) -> int:
        return int((self._now() - self._start) // self._interval_s)


class ManualClock:
    """A clock tests set by hand."""

    def __init__(self, tick: int = 0) -> None:
        self._tick = tick

    def set(self, tick: int) -> None:
        self._tick = tick

    def advance(self, n: int = 1) -> None:
        self._tick += n

    async def tick(self) -> int:
        return self._tick
