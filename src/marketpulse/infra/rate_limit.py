"""An asyncio token bucket: at most ``burst`` calls at once, ``rate_per_s`` sustained.

Guarantee: over any interval of length t, at most ``burst + rate_per_s * t`` acquisitions
succeed, whether they wait (``acquire``, the providers' limit) or are refused at once
(``try_acquire``, a socket's per-connection message limit). Waiters queue fairly (one lock);
time and sleep are injectable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

_EPS = 1e-9


class TokenBucket:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s > 0 and burst >= 1 required")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._now = now
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = now()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._now()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    async def acquire(self) -> float:
        """Wait for one token and take it. Returns the bucket's time of the taking (the moment the
        guarantee is about: a caller's own clock reading after this returns can lag it by a GIL
        switch or more when threads are busy)."""
        async with self._lock:
            self._refill()
            while self._tokens < 1.0 - _EPS:  # float dust must not spin on 1e-17 s sleeps
                await self._sleep((1.0 - self._tokens) / self.rate_per_s)
                self._refill()
            self._tokens = max(0.0, self._tokens - 1.0)
            return self._stamp

    def try_acquire(self) -> bool:
        """Take one token if one is there now; never waits, never jumps a waiting ``acquire``."""
        if self._lock.locked():
            return False
        self._refill()
        if self._tokens < 1.0 - _EPS:
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True
