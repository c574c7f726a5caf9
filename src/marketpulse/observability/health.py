"""Health warnings: provider latency, event-loop lag and memory checked against limits.

(Not the product's price alerts, ``alerts/``: these are about the service itself.) A limit warns
once per crossing (when the value goes above it) and re-arms only after a value at or below it
was seen again, so a slow provider logs one warning, not one per call. Each warning is logged
and kept in a bounded list (newest last) that the dashboard shows.
The clock is an argument so tests control timestamps.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_PROVIDER_LATENCY_MS = 2000.0
DEFAULT_LOOP_LAG_MS = 250.0
DEFAULT_MEMORY_MB = 1024.0
DEFAULT_RECENT_CAP = 50


@dataclass(frozen=True, slots=True)
class HealthLimits:
    """Thresholds above which a health warning is raised (0 disables a limit)."""

    provider_latency_ms: float = DEFAULT_PROVIDER_LATENCY_MS
    loop_lag_ms: float = DEFAULT_LOOP_LAG_MS
    memory_mb: float = DEFAULT_MEMORY_MB
    recent_cap: int = DEFAULT_RECENT_CAP

    @classmethod
    def from_settings(cls, settings: object) -> HealthLimits:
        """Read ``perf_provider_latency_ms``, ``perf_loop_lag_ms``, ``perf_memory_mb`` and
        ``perf_alerts_cap`` from the settings, with the defaults above for any that is missing."""
        return cls(
            provider_latency_ms=float(
                getattr(settings, "perf_provider_latency_ms", DEFAULT_PROVIDER_LATENCY_MS)
            ),
            loop_lag_ms=float(getattr(settings, "perf_loop_lag_ms", DEFAULT_LOOP_LAG_MS)),
            memory_mb=float(getattr(settings, "perf_memory_mb", DEFAULT_MEMORY_MB)),
            recent_cap=max(1, int(getattr(settings, "perf_alerts_cap", DEFAULT_RECENT_CAP))),
        )


@dataclass(frozen=True, slots=True)
class HealthWarning:
    """One crossing of a limit. ``kind`` is ``provider_latency``, ``loop_lag`` or ``memory``."""

    kind: str
    subject: str
    value: float
    limit: float
    unit: str
    message: str
    timestamp: str

    def to_json(self) -> dict[str, Any]:
        return {"type": "health_warning", **asdict(self)}


def _utc_iso(epoch_s: float) -> str:
    stamp = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class HealthWatch:
    """Edge-triggered limit checks; not thread-safe (called from the event loop only)."""

    def __init__(
        self,
        limits: HealthLimits,
        clock: Callable[[], float],
        on_warning: Callable[[HealthWarning], None] | None = None,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._on_warning = on_warning
        self._recent: deque[HealthWarning] = deque(maxlen=limits.recent_cap)
        self._over: set[tuple[str, str]] = set()

    def recent(self) -> list[HealthWarning]:
        """Raised warnings, oldest first, at most ``limits.recent_cap``."""
        return list(self._recent)

    def check_provider_latency(self, provider: str, seconds: float) -> HealthWarning | None:
        return self._check(
            "provider_latency", provider, seconds * 1000.0, self.limits.provider_latency_ms, "ms"
        )

    def check_loop_lag(self, seconds: float) -> HealthWarning | None:
        return self._check(
            "loop_lag", "event_loop", seconds * 1000.0, self.limits.loop_lag_ms, "ms"
        )

    def check_memory(self, rss_bytes: int) -> HealthWarning | None:
        mb = rss_bytes / (1024.0 * 1024.0)
        return self._check("memory", "rss", mb, self.limits.memory_mb, "MB")

    def _check(
        self, kind: str, subject: str, value: float, limit: float, unit: str
    ) -> HealthWarning | None:
        key = (kind, subject)
        if limit <= 0 or value <= limit:
            self._over.discard(key)
            return None
        if key in self._over:
            return None
        self._over.add(key)
        label = kind.replace("_", " ")
        above = f"above the limit of {limit:g} {unit}"
        warning = HealthWarning(
            kind=kind,
            subject=subject,
            value=round(value, 3),
            limit=limit,
            unit=unit,
            message=f"{label} of {subject} is {value:.1f} {unit}, {above}",
            timestamp=_utc_iso(self._clock()),
        )
        self._recent.append(warning)
        log.warning("health warning: %s", warning.message)
        if self._on_warning is not None:
            self._on_warning(warning)
        return warning
