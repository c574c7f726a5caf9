"""A circuit breaker per provider: closed → open → half-open → closed.

Closed: calls pass; ``failure_threshold`` consecutive failures open it. Open: calls are refused
(``CircuitOpen``) until ``cooldown_s`` has passed, then it is half-open. Half-open: exactly one
trial call passes (others are refused while it runs); success closes it, failure reopens it for
another cool-down. The clock is injectable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from marketpulse.errors import CircuitOpen


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._now = now
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._now() - self._opened_at >= self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self) -> None:
        """Admit a call or raise ``CircuitOpen``."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return
        raise CircuitOpen(f"{self.name}: circuit {state.value}")

    def on_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def on_failure(self) -> None:
        self._failures += 1
        if self._trial_running or self._failures >= self.failure_threshold:
            self._opened_at = self._now()
        self._trial_running = False

    def on_neutral(self) -> None:
        """The call ended without telling anything about the provider's health."""
        self._trial_running = False
