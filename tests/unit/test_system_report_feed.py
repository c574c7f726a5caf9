"""SystemFeed without Redis: one report per tick for every listener, none without listeners,
and a listener that does not keep up holds only the newest frame."""

from __future__ import annotations

import json

from marketpulse.observability.system_feed import SystemFeed
from marketpulse.observability.telemetry import Telemetry


class CountingFetcher:
    """Stands in for the DataFetcher's status report and counts the reports built."""

    def __init__(self) -> None:
        self.calls = 0

    def provider_status(self) -> list[dict[str, object]]:
        self.calls += 1
        return [{"provider": "simulated", "circuit": "closed", "calls_ok": 3, "calls_failed": 1}]


async def test_one_report_per_tick_for_all_listeners_and_none_without_listeners() -> None:
    telemetry, fetcher = Telemetry(), CountingFetcher()
    feed = SystemFeed(telemetry, None, fetcher)
    assert await feed.run_once() == 0
    assert fetcher.calls == 0
    with feed.listen() as a, feed.listen() as b:
        telemetry.set_active_sessions(1)
        assert await feed.run_once() == 2
        telemetry.set_active_sessions(2)
        assert await feed.run_once() == 2
        assert fetcher.calls == 2
        frames = [json.loads(q.get_nowait()) for q in (a, b)]
        assert a.empty() and b.empty()  # the older frame was replaced, not queued
    assert feed.listener_count == 0
    for frame in frames:
        assert frame["type"] == "system"
        assert frame["active_sessions"] == 2
        assert frame["redis"] == {"ok": False, "latency_ms": None, "error": "not configured"}
        [row] = frame["providers"]
        assert (row["name"], row["state"], row["ok"], row["failed"]) == (
            "simulated",
            "closed",
            3,
            1,
        )
