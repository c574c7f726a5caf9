"""Best-effort Redis calls: a call whose failure must cost only itself, never the caller's work.

The fetcher has one ``BestEffortRedis`` for each thing it reads from Redis only as an
optimisation: the quote cache (``MARKETPULSE_CACHE_URL``, or the main Redis) and the market
tick. A quote is worth more than its cache, so a failing Redis costs the cache, never the quote.
``BestEffortRedis.run`` guarantees:

- It never raises because Redis failed (``RedisUnavailable``) or did not answer within
  ``timeout_s``; it returns ``None`` instead and the caller goes on without Redis (the fetcher:
  every symbol a miss with no last good quote, so nothing stale is served from a Redis that does
  not answer, and the write is skipped).
- After a failure Redis is bypassed for ``retry_s``, then one trial operation goes through (a
  breaker with a threshold of one), so a dead Redis costs one failed round trip per ``retry_s``,
  not one per fetch.
- Failures and bypassed operations are counted (``failures``, ``bypassed``). The outage is logged
  at most once per ``log_every_s`` (WARNING, with the operation, the error, the failures so far
  and how many were not logged), and once at INFO when Redis answers again.
- Cancellation propagates and says nothing about Redis's health.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from marketpulse.errors import CircuitOpen, RedisUnavailable
from marketpulse.market.circuit import CircuitBreaker

log = logging.getLogger(__name__)
T = TypeVar("T")


class OutageReport:
    """Counts a dependency's failures and logs them rate-limited (see the module docstring)."""

    def __init__(self, what: str, *, every_s: float, now: Callable[[], float]) -> None:
        self.what = what
        self.failures = 0
        self._every_s = every_s
        self._now = now
        self._last_logged: float | None = None
        self._unlogged = 0
        self._down = False

    def failed(self, op: str, error: BaseException) -> None:
        self.failures += 1
        self._unlogged += 1
        self._down = True
        at = self._now()
        if self._last_logged is not None and at - self._last_logged < self._every_s:
            return
        log.warning(
            "%s unavailable; quotes are fetched without it",
            self.what,
            extra={"dependency": self.what, "op": op, "error": str(error) or repr(error),
                   "failures": self.failures, "not_logged": self._unlogged - 1},
        )  # fmt: skip
        self._last_logged = at
        self._unlogged = 0

    def recovered(self) -> None:
        if not self._down:
            return
        log.info(
            "%s available again",
            self.what,
            extra={"dependency": self.what, "failures": self.failures,
                   "not_logged": self._unlogged},
        )  # fmt: skip
        self._down = False
        self._last_logged = None
        self._unlogged = 0


class BestEffortRedis:
    """Runs optional Redis operations of one dependency; see the module docstring."""

    def __init__(
        self,
        what: str,
        *,
        timeout_s: float,
        retry_s: float,
        log_every_s: float,
        now: Callable[[], float],
    ) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self.bypassed = 0
        self.outage = OutageReport(what, every_s=log_every_s, now=now)
        self.breaker = CircuitBreaker(what, failure_threshold=1, cooldown_s=retry_s, now=now)

    @property
    def failures(self) -> int:
        return self.outage.failures

    async def run(self, op: str, fn: Callable[[], Awaitable[T]]) -> T | None:
        """``fn()``'s value (which must not be None), or None when Redis failed, timed out or
        is being bypassed."""
        try:
            self.breaker.before_call()
        except CircuitOpen:
            self.bypassed += 1
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                value = await fn()
        except asyncio.CancelledError:
            self.breaker.on_neutral()
            raise
        except (RedisUnavailable, TimeoutError) as exc:
            self.breaker.on_failure()
            self.outage.failed(op, exc)
            return None
        self.breaker.on_success()
        self.outage.recovered()
        return value
