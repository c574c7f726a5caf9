"""Real daily bars (replay) through the monitor: each alert fires exactly once per crossing,
checked against crossings computed independently from the same bars."""

from __future__ import annotations

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import ReplaySource
from marketpulse.market.providers.tick_provider import TickQuoteProvider

FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)  # no provider rate limit in tests

LAST_TICK = 220


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[FiredAlert] = []

    async def send(self, alert: FiredAlert) -> None:
        self.seen.append(alert)


def expected_fires(src: ReplaySource, a: AlertCondition, first: int, last: int) -> list[int]:
    """Ticks where the condition goes from false to true (false before the first tick)."""
    out: list[int] = []
    volumes: list[float] = []
    was = False
    for t in range(first, last + 1):
        bar, prev = src.bar(a.symbol, t), src.bar(a.symbol, t - 1)
        value: float | None
        if a.alert_type is AlertType.PRICE_THRESHOLD:
            value = bar.close
        elif a.alert_type is AlertType.PERCENTAGE_CHANGE:
            value = 100 * (bar.close - prev.close) / prev.close
            if a.comparison == "below":
                value = -value
        else:
            value = bar.volume / (sum(volumes[-20:]) / 20) if len(volumes) >= 20 else None
            volumes.append(bar.volume)
        if value is None:
            continue
        now = (
            value >= a.threshold
            if a.comparison == "above" or a.alert_type is AlertType.PERCENTAGE_CHANGE
            else value <= a.threshold
        )
        if now and not was:
            out.append(t)
        was = now
    return out


def alerts() -> list[AlertCondition]:
    def c(sym: str, t: AlertType, th: float, cmp: str) -> AlertCondition:
        return AlertCondition(symbol=sym, alert_type=t, threshold=th, comparison=cmp)

    return [
        c("AAPL", AlertType.PRICE_THRESHOLD, 600, "above"),
        c("AAPL", AlertType.PRICE_THRESHOLD, 580, "below"),
        c("AAPL", AlertType.PRICE_THRESHOLD, 620, "above"),
        c("MSFT", AlertType.PRICE_THRESHOLD, 30, "above"),
        c("MSFT", AlertType.PRICE_THRESHOLD, 29, "below"),
        c("IBM", AlertType.PERCENTAGE_CHANGE, 1.5, "above"),
        c("IBM", AlertType.PERCENTAGE_CHANGE, 1.5, "below"),
        c("GOOG", AlertType.PERCENTAGE_CHANGE, 2.0, "above"),
        c("AAPL", AlertType.VOLUME_SPIKE, 1.6, "above"),
        c("MSFT", AlertType.VOLUME_SPIKE, 0.6, "below"),
    ]


async def test_replay_fires_each_alert_once_per_crossing(redis_boundary: RedisClient) -> None:
    src = ReplaySource(start="2012-03-01", step=1)
    clock = ManualClock(1)
    rec = Recorder()
    mgr = AlertManager(RedisAlertStore(redis_boundary), [rec])
    monitor = MonitorService(DataFetcher([TickQuoteProvider(src)], clock=clock, policy=FAST), mgr,
                             redis=redis_boundary, clock=clock)  # fmt: skip
    defs = alerts()
    for a in defs:
        await mgr.add_alert(a)
    for s in ("AAPL", "MSFT", "IBM", "GOOG"):
        await monitor.add_symbol(s)
    # uneven jumps of the clock: the monitor evaluates every tick in between, once
    evaluated = 0
    for t in [1, 2, 7, 8, 40, 41, 100, 150, 151, 152, LAST_TICK]:
        clock.set(t)
        evaluated += await monitor.run_once()
    evaluated += await monitor.run_once()  # nothing new: evaluates nothing
    assert evaluated == 4 * LAST_TICK
    await mgr.deliver_pending()  # the fires, from the outbox

    got: dict[str, list[int]] = {a.id: [] for a in defs}
    for f in rec.seen:
        got[f.alert_id].append(f.observation)
    want = {a.id: expected_fires(src, a, 1, LAST_TICK) for a in defs}
    assert {k: sorted(v) for k, v in got.items()} == want
    assert sum(len(v) for v in want.values()) >= 20  # the data really crosses back and forth
    assert all(len(v) >= 1 for v in want.values())
    history = await mgr.history(None, 1000)
    assert len(history) == len(rec.seen)
    assert {h.quote.source for h in history} == {"replay"}
