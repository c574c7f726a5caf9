"""The one policy layer around every provider: rate limit, timeout, retries, circuit breaker.

``GuardedProvider.call`` guarantees: the provider is entered only when its breaker admits the
call and, for a live provider, its token bucket grants a token; each attempt is bounded by
``timeout_s``; only transient errors are retried, at most ``retry.max_attempts`` attempts spaced
per ``RetryPolicy`` (full jitter, ``Retry-After`` honoured); every attempt is logged (provider,
op, symbol, outcome, latency) and counted. A tick-addressed provider (``live`` False: the
simulated or replay market) computes its quotes in memory and has no quota to protect, so it
takes no token: a bucket there would only hold the monitor below the market's pace (5 symbols at
2 ticks a second is twice the default 5 calls a second; the monitor's lag then grew by a tick
every second the service ran). It raises our errors only (``MarketDataError`` subclasses).
Time, sleep and jitter come from ``FetchPolicy`` so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from marketpulse.errors import MarketDataError, PermanentSourceError, TransientSourceError
from marketpulse.infra.rate_limit import TokenBucket
from marketpulse.infra.retry import RetryPolicy, call_with_retry
from marketpulse.market.circuit import CircuitBreaker
from marketpulse.market.ports import QuoteProvider

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class FetchPolicy:
    """Every knob of the fetch layer, and the time functions it runs on."""

    timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rate_per_s: float = 5.0
    burst: int = 10
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    max_jump: float = 100.0
    max_concurrency: int = 32
    cache_timeout_s: float = 2.0  # a cache (or tick) read/write slower than this is skipped
    cache_retry_s: float = 5.0  # after a cache failure, bypass the cache this long
    outage_log_every_s: float = 60.0  # at most one cache-outage warning per this interval
    # market hours: the one call after a close waits this long for the closing price
    closing_print_delay_s: float = 300.0
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    uniform: Callable[[float, float], float] = random.uniform


@dataclass
class ProviderStats:
    ok: int = 0
    failed: int = 0
    last_error: str | None = None
    last_latency_ms: float | None = None
    latency_sum_s: float = 0.0
    latency_count: int = 0


class CallObserver:
    """Receives one report per provider attempt (the fetcher's counters and telemetry)."""

    def observe(self, provider: str, outcome: str, seconds: float) -> None:
        """Default: nothing beyond the stats kept by the guard."""


class GuardedProvider:
    """A provider behind the policy; one per provider, shared by all its calls."""

    def __init__(
        self, provider: QuoteProvider, policy: FetchPolicy, observer: CallObserver | None = None
    ) -> None:
        self.provider = provider
        self.policy = policy
        self.name = provider.name
        self.breaker = CircuitBreaker(
            provider.name, policy.breaker_failures, policy.breaker_cooldown_s, now=policy.now
        )
        self.bucket = TokenBucket(
            policy.rate_per_s, policy.burst, now=policy.now, sleep=policy.sleep
        )
        self.stats = ProviderStats()
        self._observer = observer or CallObserver()

    async def call(self, op: str, symbol: str, fn: Callable[[], Awaitable[T]]) -> T:
        async def once(attempt: int) -> T:
            self.breaker.before_call()
            if self.provider.live:
                try:
                    await self.bucket.acquire()
                except asyncio.CancelledError:
                    self.breaker.on_neutral()  # an admitted half-open trial must not stay claimed
                    raise
            outcome = await self._attempt(op, symbol, attempt, fn)
            if isinstance(outcome, _Ok):
                return outcome.value
            raise outcome

        def retrying(attempt: int, error: TransientSourceError, delay: float) -> None:
            log.info(
                "provider retry",
                extra={"provider": self.name, "symbol": symbol, "attempt": attempt,
                       "delay_s": round(delay, 3)},
            )  # fmt: skip

        return await call_with_retry(
            once,
            self.policy.retry,
            sleep=self.policy.sleep,
            uniform=self.policy.uniform,
            on_retry=retrying,
        )

    async def _attempt(
        self, op: str, symbol: str, attempt: int, fn: Callable[[], Awaitable[T]]
    ) -> _Ok[T] | MarketDataError:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                value = await fn()
        except asyncio.CancelledError:
            self.breaker.on_neutral()
            raise
        except TimeoutError as exc:
            error: MarketDataError = TransientSourceError(
                f"{self.name}: no answer within {self.policy.timeout_s}s"
            )
            error.__cause__ = exc
        except MarketDataError as exc:
            error = exc
        else:
            self._record(op, symbol, attempt, "ok", started, None)
            self.breaker.on_success()
            return _Ok(value)
        if isinstance(error, TransientSourceError):
            self.breaker.on_failure()
            outcome = "timeout" if isinstance(error.__cause__, TimeoutError) else "transient"
        else:
            self.breaker.on_neutral()
            outcome = "permanent" if isinstance(error, PermanentSourceError) else "invalid"
        self._record(op, symbol, attempt, outcome, started, error)
        return error

    def _record(
        self,
        op: str,
        symbol: str,
        attempt: int,
        outcome: str,
        started: float,
        error: Exception | None,
    ) -> None:
        seconds = time.perf_counter() - started
        st = self.stats
        st.last_latency_ms = seconds * 1000.0
        st.latency_sum_s += seconds
        st.latency_count += 1
        if error is None:
            st.ok += 1
        else:
            st.failed += 1
            st.last_error = str(error)
        self._observer.observe(self.name, outcome, seconds)
        log.log(
            logging.INFO if error is None else logging.WARNING,
            "provider call",
            extra={"provider": self.name, "op": op, "symbol": symbol, "attempt": attempt,
                   "outcome": outcome, "latency_ms": round(seconds * 1000.0, 2),
                   "error": None if error is None else str(error)},
        )  # fmt: skip

    def status(self) -> dict[str, object]:
        st = self.stats
        return {
            "name": self.name,
            "circuit": self.breaker.state.value,
            "last_error": st.last_error,
            "last_latency_ms": st.last_latency_ms,
            "calls_ok": st.ok,
            "calls_failed": st.failed,
        }


@dataclass(frozen=True, slots=True)
class _Ok[V]:
    value: V
