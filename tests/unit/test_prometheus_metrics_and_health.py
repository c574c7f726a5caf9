"""Telemetry without Redis: metric methods, health limits, loop-lag sampling."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from marketpulse.config import Settings
from marketpulse.observability.health import HealthLimits
from marketpulse.observability.loop_lag import LoopLagMonitor, resident_memory_bytes
from marketpulse.observability.telemetry import Telemetry


def samples(telemetry: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(telemetry.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_each_app_has_its_own_registry() -> None:
    a, b = Telemetry(), Telemetry()
    a.alert_fired()
    assert samples(a)[("marketpulse_alerts_fired_total", ())] == 1
    assert samples(b)[("marketpulse_alerts_fired_total", ())] == 0


def test_clients_gauge_never_goes_negative() -> None:
    t = Telemetry()
    t.client_connected("session")
    t.client_connected("session")
    t.client_disconnected("session")
    t.client_disconnected("alerts")
    s = samples(t)
    assert s[("marketpulse_connected_clients", (("kind", "session"),))] == 1
    assert s[("marketpulse_connected_clients", (("kind", "alerts"),))] == 0
    assert t.snapshot()["connected_clients"] == {"session": 1, "alerts": 0, "dashboard": 0}


def test_analysis_events_are_a_closed_set() -> None:
    t = Telemetry()
    t.analysis_event("started")
    t.analysis_event("completed")
    t.analysis_completed(1.5)
    with pytest.raises(ValueError, match="unknown analysis event"):
        t.analysis_event("exploded")
    s = samples(t)
    assert s[("marketpulse_analysis_runs_total", (("event", "started"),))] == 1
    assert s[("marketpulse_analysis_runs_total", (("event", "completed"),))] == 1
    assert s[("marketpulse_analysis_runs_total", (("event", "failed"),))] == 0
    assert s[("marketpulse_analysis_duration_seconds_sum", ())] == 1.5


def test_a_health_warning_fires_once_per_crossing_and_rearms() -> None:
    clock = ManualClock()
    t = Telemetry(HealthLimits(provider_latency_ms=100, loop_lag_ms=50), clock=clock)
    t.provider_call("yahoo", "ok", 0.5)  # over: fires
    t.provider_call("yahoo", "ok", 0.6)  # still over: silent
    t.provider_call("nse", "ok", 0.2)  # another provider: its own crossing
    t.provider_call("yahoo", "ok", 0.05)  # back under: re-arms
    t.provider_call("yahoo", "timeout", 0.3)  # fires again
    t.loop_lag_observed(0.01)
    alerts = t.health.recent()
    assert [(a.kind, a.subject) for a in alerts] == [
        ("provider_latency", "yahoo"),
        ("provider_latency", "nse"),
        ("provider_latency", "yahoo"),
    ]
    assert alerts[0].value == 500.0
    assert alerts[0].limit == 100
    assert "above the limit" in alerts[0].message
    assert alerts[0].timestamp == "2023-11-14T22:13:20.000Z"
    s = samples(t)
    assert s[("marketpulse_performance_alerts_total", (("kind", "provider_latency"),))] == 3
    snapshot = t.snapshot()["health_warnings"]
    assert snapshot[0]["subject"] == "yahoo"  # newest first
    assert snapshot[0]["type"] == "health_warning"


def test_recent_health_warnings_are_bounded() -> None:
    t = Telemetry(HealthLimits(loop_lag_ms=1, recent_cap=3))
    for _ in range(10):
        t.loop_lag_observed(0.5)
        t.loop_lag_observed(0.0)
    assert len(t.health.recent()) == 3


def test_zero_limit_disables_the_check() -> None:
    t = Telemetry(HealthLimits(memory_mb=0))
    t.memory_observed(10**12)
    assert t.health.recent() == []


@pytest.mark.parametrize(
    "field", ["perf_provider_latency_ms", "perf_loop_lag_ms", "perf_memory_mb"]
)
def test_a_limit_of_zero_in_the_settings_disables_it(field: str) -> None:
    t = Telemetry.from_settings(Settings(**cast(dict[str, Any], {field: 0})))
    t.provider_call("slow", "ok", 10**6)
    t.loop_lag_observed(10**6)
    t.memory_observed(10**15)
    kinds = {a.kind for a in t.health.recent()}
    disabled = field.removeprefix("perf_").rsplit("_", 1)[0]
    assert disabled not in kinds
    assert len(kinds) == 2  # the other two limits still fire


@pytest.mark.parametrize(
    "field", ["perf_provider_latency_ms", "perf_loop_lag_ms", "perf_memory_mb", "perf_alerts_cap"]
)
def test_a_negative_limit_is_refused(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**cast(dict[str, Any], {field: -1}))


def test_limits_come_from_settings_with_defaults() -> None:
    class Partial:
        perf_loop_lag_ms = 12.5

    limits = HealthLimits.from_settings(Partial())
    assert limits.loop_lag_ms == 12.5
    assert limits.provider_latency_ms == HealthLimits().provider_latency_ms


async def test_loop_lag_monitor_samples_lag_and_memory() -> None:
    t = Telemetry(HealthLimits(loop_lag_ms=0.000001))
    monitor = LoopLagMonitor(t, interval_s=0.01)
    lag = await monitor.run_once(timer_overshoot_s=0.2)
    assert lag >= 0.2
    s = samples(t)
    assert s[("marketpulse_event_loop_lag_seconds", ())] == lag
    assert s[("marketpulse_event_loop_lag_sample_seconds_count", ())] == 1
    assert s[("marketpulse_process_resident_memory_bytes", ())] > 1024 * 1024
    assert [a.kind for a in t.health.recent()] == ["loop_lag"]


async def test_loop_lag_monitor_stops_on_event() -> None:
    t = Telemetry()
    monitor = LoopLagMonitor(t, interval_s=0.01)
    stop = asyncio.Event()
    stop.set()
    async with asyncio.timeout(5):
        await monitor.run(stop)
    stop.clear()
    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        tg.create_task(monitor.run(stop))
        await monitor.run_once()
        stop.set()
    assert samples(t)[("marketpulse_event_loop_lag_sample_seconds_count", ())] >= 1


def test_resident_memory_is_plausible() -> None:
    rss = resident_memory_bytes()
    assert 1024 * 1024 < rss < 64 * 1024**3


def test_cache_outage_counts_are_read_at_scrape_time() -> None:
    t = Telemetry()
    counts = [0, 0, 0]
    t.watch_cache_outages(lambda: (counts[0], counts[1], counts[2]))
    assert samples(t)[("marketpulse_cache_errors_total", ())] == 0
    counts[:] = [3, 5, 1]  # the fetch layer's own counters moved
    got = samples(t)
    assert got[("marketpulse_cache_errors_total", ())] == 3
    assert got[("marketpulse_cache_bypassed_total", ())] == 5
    assert got[("marketpulse_tick_errors_total", ())] == 1
