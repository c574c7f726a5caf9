"""Telemetry: every Prometheus metric of the service, in a registry owned by one app.

``Telemetry`` is built by ``create_app`` and handed to the services; it never touches the global
default registry, so a test can build several apps in one process. Components report through the
small typed methods below (never through the prometheus objects), which keeps metric names and
labels in this one module. Provider latency, loop lag and memory are also checked against the
health limits, and a crossing is a health warning (see ``health.py``).

Metric names (all ``marketpulse_*``):

    http_request_duration_seconds{method,route,status}     histogram
    ws_message_duration_seconds{direction,type}           histogram
    provider_call_duration_seconds{provider}              histogram
    provider_calls_total{provider,outcome}                counter
    cache_hits_total / cache_misses_total                 counters
    analysis_runs_total{event}                            counter (started, restarted, ...)
    analysis_duration_seconds                             histogram (start to complete)
    alerts_evaluated_total / alerts_fired_total           counters
    revaluation_sweep_duration_seconds                    histogram
    sessions_revalued_total                               counter
    connected_clients{kind}                               gauge (session, alerts, dashboard)
    active_sessions                                       gauge
    event_loop_lag_seconds                                gauge (latest sample)
    event_loop_lag_sample_seconds                         histogram (all samples)
    process_resident_memory_bytes                         gauge
    performance_alerts_total{kind}                        counter (health warnings; name kept)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from marketpulse.observability.health import HealthLimits, HealthWarning, HealthWatch

CONTENT_TYPE = CONTENT_TYPE_LATEST
ANALYSIS_EVENTS = ("started", "restarted", "cancelled", "completed", "failed")
CLIENT_KINDS = ("session", "alerts", "dashboard")
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
_LAG = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


CacheOutageCounts = Callable[[], tuple[int, int, int]]


class _CacheOutageCollector(Collector):
    """Counters the fetch layer keeps itself (its BestEffortRedis calls), read at scrape time."""

    def __init__(self, read: CacheOutageCounts) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        errors, bypassed, tick_errors = self._read()
        yield CounterMetricFamily(
            "marketpulse_cache_errors", "quote cache operations that failed", value=errors
        )
        yield CounterMetricFamily(
            "marketpulse_cache_bypassed",
            "quote cache operations skipped while its Redis was failing",
            value=bypassed,
        )
        yield CounterMetricFamily(
            "marketpulse_tick_errors", "market tick reads that failed", value=tick_errors
        )


class Telemetry:
    """Metrics of one app instance plus its recent health warnings."""

    def __init__(
        self,
        limits: HealthLimits | None = None,
        clock: Callable[[], float] = time.time,
        on_health_warning: Callable[[HealthWarning], None] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self.health = HealthWatch(limits or HealthLimits(), clock, self._count_health_warning)
        self._forward_warning = on_health_warning
        self._connected: dict[str, int] = dict.fromkeys(CLIENT_KINDS, 0)
        self._active_sessions = 0
        self._loop_lag_s = 0.0
        self._rss_bytes = 0
        self._build_metrics()

    @classmethod
    def from_settings(cls, settings: object) -> Telemetry:
        return cls(HealthLimits.from_settings(settings))

    def _build_metrics(self) -> None:
        r = self.registry
        p = "marketpulse_"
        self._http = Histogram(
            p + "http_request_duration_seconds",
            "HTTP request latency by route template",
            ("method", "route", "status"),
            buckets=_FAST,
            registry=r,
        )
        self._ws_children: dict[tuple[str, str], Any] = {}
        self._ws = Histogram(
            p + "ws_message_duration_seconds",
            "WebSocket message handling (in) or send (out) latency",
            ("direction", "type"),
            buckets=_FAST,
            registry=r,
        )
        self._provider_latency = Histogram(
            p + "provider_call_duration_seconds",
            "Market data provider call latency",
            ("provider",),
            buckets=_SLOW,
            registry=r,
        )
        self._provider_calls = Counter(
            p + "provider_calls", "Provider calls by outcome", ("provider", "outcome"), registry=r
        )
        self._cache_hits = Counter(p + "cache_hits", "Quote cache hits", registry=r)
        self._cache_misses = Counter(p + "cache_misses", "Quote cache misses", registry=r)
        self._analysis = Counter(
            p + "analysis_runs", "Analysis run lifecycle events", ("event",), registry=r
        )
        for event in ANALYSIS_EVENTS:
            self._analysis.labels(event)
        self._analysis_time = Histogram(
            p + "analysis_duration_seconds",
            "Time from analysis start to completion",
            buckets=_SLOW,
            registry=r,
        )
        self._alerts_evaluated = Counter(
            p + "alerts_evaluated", "Alert conditions evaluated", registry=r
        )
        self._alerts_fired = Counter(p + "alerts_fired", "Alerts fired", registry=r)
        self._sweep = Histogram(
            p + "revaluation_sweep_duration_seconds",
            "Duration of one portfolio revaluation sweep",
            buckets=_SLOW,
            registry=r,
        )
        self._revalued = Counter(p + "sessions_revalued", "Sessions revalued", registry=r)
        self._clients = Gauge(
            p + "connected_clients", "Open WebSocket connections", ("kind",), registry=r
        )
        for kind in CLIENT_KINDS:
            self._clients.labels(kind).set(0)
        self._sessions = Gauge(p + "active_sessions", "Live portfolio sessions", registry=r)
        self._lag = Gauge(p + "event_loop_lag_seconds", "Latest event-loop lag", registry=r)
        self._lag_hist = Histogram(
            p + "event_loop_lag_sample_seconds", "Event-loop lag samples", buckets=_LAG, registry=r
        )
        self._rss = Gauge(
            p + "process_resident_memory_bytes", "Resident set size of the process", registry=r
        )
        # the metric keeps its published name; in the code these are health warnings
        self._health_warnings = Counter(
            p + "performance_alerts",
            "Health limits crossed (health warnings)",
            ("kind",),
            registry=r,
        )

    # --- reporting methods (called by the API and the services) -------------------------------

    def http_observed(self, method: str, route: str, status: int, seconds: float) -> None:
        self._http.labels(method, route, str(status)).observe(seconds)

    def ws_message(self, direction: str, message_type: str, seconds: float) -> None:
        """``direction`` is ``in`` (received and handled) or ``out`` (sent)."""
        child = self._ws_children.get((direction, message_type))
        if child is None:  # labels() validates and locks on every call: once per pair here
            child = self._ws_children[(direction, message_type)] = self._ws.labels(
                direction, message_type
            )
        child.observe(seconds)

    def provider_call(self, provider: str, outcome: str, seconds: float) -> None:
        """``outcome``: ``ok``, ``error``, ``timeout``, ``circuit_open``, ``rate_limited`` ..."""
        self._provider_calls.labels(provider, outcome).inc()
        self._provider_latency.labels(provider).observe(seconds)
        self.health.check_provider_latency(provider, seconds)

    def watch_cache_outages(self, read: CacheOutageCounts) -> None:
        """Expose the fetch layer's cache and tick failure counts (read at scrape time)."""
        self.registry.register(_CacheOutageCollector(read))

    def cache(self, hit: bool) -> None:
        (self._cache_hits if hit else self._cache_misses).inc()

    def analysis_event(self, kind: str) -> None:
        """``kind`` is one of ``ANALYSIS_EVENTS``; anything else raises ``ValueError``."""
        if kind not in ANALYSIS_EVENTS:
            raise ValueError(f"unknown analysis event {kind!r}")
        self._analysis.labels(kind).inc()

    def analysis_completed(self, seconds: float) -> None:
        """Records a run's time to complete; the count is ``analysis_event("completed")``."""
        self._analysis_time.observe(seconds)

    def alert_evaluated(self, n: int = 1) -> None:
        self._alerts_evaluated.inc(n)

    def alert_fired(self, n: int = 1) -> None:
        self._alerts_fired.inc(n)

    def sweep_observed(self, seconds: float, n_sessions: int) -> None:
        self._sweep.observe(seconds)
        self._revalued.inc(n_sessions)

    def client_connected(self, kind: str) -> None:
        self._connected[kind] = self._connected.get(kind, 0) + 1
        self._clients.labels(kind).inc()

    def client_disconnected(self, kind: str) -> None:
        self._connected[kind] = max(0, self._connected.get(kind, 0) - 1)
        self._clients.labels(kind).set(self._connected[kind])

    def set_active_sessions(self, n: int) -> None:
        self._active_sessions = max(0, n)
        self._sessions.set(self._active_sessions)

    def loop_lag_observed(self, seconds: float) -> None:
        self._loop_lag_s = seconds
        self._lag.set(seconds)
        self._lag_hist.observe(seconds)
        self.health.check_loop_lag(seconds)

    def memory_observed(self, rss_bytes: int) -> None:
        self._rss_bytes = rss_bytes
        self._rss.set(rss_bytes)
        self.health.check_memory(rss_bytes)

    # --- reading --------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """Live figures for the dashboard's System part."""
        return {
            "connected_clients": dict(self._connected),
            "active_sessions": self._active_sessions,
            "loop_lag_ms": round(self._loop_lag_s * 1000.0, 3),
            "rss_bytes": self._rss_bytes,
            "health_warnings": [w.to_json() for w in reversed(self.health.recent())],
            "limits": {
                "provider_latency_ms": self.health.limits.provider_latency_ms,
                "loop_lag_ms": self.health.limits.loop_lag_ms,
                "memory_mb": self.health.limits.memory_mb,
            },
        }

    def _count_health_warning(self, warning: HealthWarning) -> None:
        self._health_warnings.labels(warning.kind).inc()
        if self._forward_warning is not None:
            self._forward_warning(warning)
