"""Retry schedule: exponential backoff with full jitter, honouring ``Retry-After``.

Only ``TransientSourceError`` is retried (429, 5xx, timeouts, connection errors); everything
else fails at once. Attempts are bounded by ``max_attempts``; delays by ``cap_s`` (and a server's
``Retry-After`` by ``retry_after_cap_s``). Randomness is injectable so tests can pin it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from marketpulse.errors import TransientSourceError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_s: float = 0.25
    cap_s: float = 5.0
    retry_after_cap_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_s < 0 or self.cap_s < 0:
            raise ValueError("max_attempts >= 1 and non-negative delays required")

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the jittered delay after failed attempt ``attempt`` (1-based)."""
        return float(min(self.cap_s, self.base_s * 2.0 ** (attempt - 1)))

    def delay(
        self,
        attempt: int,
        error: Exception,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when no retry is due."""
        if not isinstance(error, TransientSourceError) or attempt >= self.max_attempts:
            return None
        if error.retry_after is not None:
            return min(self.retry_after_cap_s, error.retry_after)
        return uniform(0.0, self.ceiling(attempt))
