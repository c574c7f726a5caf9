"""The one backoff schedule, and the one retry policy built on it.

``Backoff``: the n-th wait (1-based) is at most ``min(cap_s, base_s * 2**(n-1))``, its
ceiling; with ``jitter`` (full jitter) it is drawn uniformly from ``[0, ceiling]``, without it
is the ceiling itself. Every wait-and-try-again of the service uses one: the market providers
and the alert webhook (through ``RetryPolicy``), the pub/sub reconnect and the Redis mux's
command retry. (redis-py's own client keeps its library setting, ``infra/redis/client.py``.)

``RetryPolicy``: only ``TransientSourceError`` is retried (429, 5xx, timeouts, connection
errors); everything else fails at once. Attempts are bounded by ``max_attempts``; waits follow
a jittered ``Backoff(base_s, cap_s)``, except that a server's ``Retry-After`` wins (capped at
``retry_after_cap_s``). ``call_with_retry`` runs a call under it. Randomness and sleep are
injectable so tests can pin them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from marketpulse.errors import TransientSourceError

Uniform = Callable[[float, float], float]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential waits from ``base_s`` doubling to ``cap_s``, fully jittered or exact."""

    base_s: float
    cap_s: float
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("non-negative delays required")

    def ceiling(self, n: int) -> float:
        """The longest n-th wait (1-based)."""
        return float(min(self.cap_s, self.base_s * 2.0 ** (n - 1)))

    def delay(self, n: int, uniform: Uniform = random.uniform) -> float:
        """The n-th wait (1-based): uniform in ``[0, ceiling(n)]`` with jitter, else the ceiling."""
        top = self.ceiling(n)
        return uniform(0.0, top) if self.jitter else top


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_s: float = 0.25
    cap_s: float = 5.0
    retry_after_cap_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_s < 0 or self.cap_s < 0:
            raise ValueError("max_attempts >= 1 and non-negative delays required")

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.base_s, self.cap_s, jitter=True)

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the jittered delay after failed attempt ``attempt`` (1-based)."""
        return self.backoff.ceiling(attempt)

    def delay(
        self, attempt: int, error: Exception, uniform: Uniform = random.uniform
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when no retry is due."""
        if not isinstance(error, TransientSourceError) or attempt >= self.max_attempts:
            return None
        if error.retry_after is not None:
            return min(self.retry_after_cap_s, error.retry_after)
        return self.backoff.delay(attempt, uniform)


async def call_with_retry[T](
    call: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    uniform: Uniform = random.uniform,
    on_retry: Callable[[int, TransientSourceError, float], None] | None = None,
) -> T:
    """``call(attempt)`` (1-based) until it returns, retried per ``policy``; the last error is
    raised as is. ``on_retry(attempt, error, delay)`` is told before each wait."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call(attempt)
        except TransientSourceError as exc:
            delay = policy.delay(attempt, exc, uniform)
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await sleep(delay)


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
