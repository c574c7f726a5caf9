"""The backtest equals the live monitor (issue 19, item 6): random rules on random windows of
the replay market's real daily bars. The live side is the real thing: a ``MonitorService``
on a real Redis, the ``AlertManager`` with its index, rule path, Lua transition and the
``IndicatorFeed``, a manual market clock moved over the window. It must record exactly the
fires the backtest of the same window reports: the same times, values, muted flags, count.

Both start from the same past: the monitor watches the symbols for the ``VOLUME_WINDOW``
ticks before the window (its volume window, as the backtest's warm-up bars), the alerts are
added just before the window's first tick, and the indicator books load their history at
that first tick, as the backtest seeds them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketpulse.alerts.backtest import Backtester
from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.indicator_feed import IndicatorFeed
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.rules import VOLUME_WINDOW, AlertCondition
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.calendar import Calendars
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import ReplaySource
from marketpulse.market.providers.tick_provider import TickQuoteProvider

FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)
START = "2010-01-04"  # tick 0; the windows lie in 2010..2012 (every series has bars)
SYMBOLS = ("AAPL", "MSFT", "IBM", "GOOG")
CALENDARS = Calendars()  # one per module: the NYSE schedule is built once

comparisons = st.sampled_from(["above", "below", "crosses_above", "crosses_below"])
margins = st.sampled_from([0.0, 0.0, 0.5, 2.0])
cooldowns = st.sampled_from([0.0, 0.0, 3 * 86_400.0, 10 * 86_400.0])


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    """The condition part of a rule; a price threshold is a fraction of the window's first
    close (``price_ratio``), so it is crossed often."""
    kind = draw(st.sampled_from(["price", "change", "volume", "indicator", "all_of"]))
    if kind == "price":
        return {
            "alert_type": "price_threshold",
            "price_ratio": draw(st.floats(0.9, 1.1)),
            "comparison": draw(comparisons),
            "rearm_margin": draw(margins),
        }
    if kind == "change":
        return {
            "alert_type": "percentage_change",
            "threshold": draw(st.sampled_from([0.5, 1.0, 2.0])),
            "comparison": draw(comparisons),
            "rearm_margin": draw(st.sampled_from([0.0, 0.5])),
        }
    if kind == "volume":
        return {
            "alert_type": "volume_spike",
            "threshold": draw(st.sampled_from([0.7, 1.2, 1.6])),
            "comparison": draw(comparisons),
            "rearm_margin": draw(st.sampled_from([0.0, 0.2])),
        }
    choices: list[tuple[dict[str, Any], float]] = [
        ({"kind": "rsi", "period": 14}, 50.0),
        ({"kind": "rsi", "period": 5}, 60.0),
        ({"kind": "price_vs_sma", "period": 20}, 0.0),
        ({"kind": "price_vs_ema", "period": 10}, 1.0),
        ({"kind": "ma_cross", "fast": 5, "slow": 20, "average": "ema"}, 0.0),
        ({"kind": "change_sessions", "period": 5}, -1.0),
        ({"kind": "drawdown", "period": 20}, 3.0),
        ({"kind": "from_52w_high", "period": None}, 10.0),
    ]
    spec, threshold = draw(st.sampled_from(choices))
    indicator = {k: v for k, v in spec.items() if v is not None}
    clause = {
        "alert_type": "indicator",
        "indicator": indicator,
        "threshold": threshold,
        "comparison": draw(st.sampled_from(["above", "below"])),
        "rearm_margin": draw(st.sampled_from([0.0, 1.0])),
    }
    if kind == "indicator":
        return {**clause, "comparison": draw(comparisons)}
    change = {
        "alert_type": "percentage_change",
        "threshold": 0.5,
        "comparison": draw(st.sampled_from(["above", "below"])),
    }
    return {
        "alert_type": "all_of",
        "all_of": [clause, change],
        "comparison": draw(st.sampled_from(["above", "crosses_above"])),
    }


def day_of(src: ReplaySource, tick: int) -> date:
    return date.fromisoformat(src.bar("AAPL", tick).date)


async def check(
    client: RedisClient,
    condition: dict[str, Any],
    symbols: list[str],
    first: int,
    length: int,
    cooldown_s: float,
    snooze_ticks: int | None,
    start: str = START,
) -> tuple[int, int]:
    """Replay the window live and backtest it; asserts they agree. (fires, muted fires)."""
    await client.call("FLUSHDB")
    src = ReplaySource(start, step=1)
    clock = ManualClock(first - VOLUME_WINDOW - 1)
    fetcher = DataFetcher([TickQuoteProvider(src)], clock=clock, policy=FAST)
    mgr = AlertManager(RedisAlertStore(client), [], indicators=IndicatorFeed(fetcher))
    monitor = MonitorService(fetcher, mgr, redis=client, clock=clock)
    last = first + length - 1
    snoozed_until = None
    if snooze_ticks is not None:  # snoozed until midday of a day inside the window
        at = datetime.combine(day_of(src, first + snooze_ticks), datetime.min.time(), UTC)
        snoozed_until = (at + timedelta(hours=12)).isoformat()
    fields = {k: v for k, v in condition.items() if k != "price_ratio"}
    fields |= {"cooldown_s": cooldown_s, "snoozed_until": snoozed_until}
    if "price_ratio" in condition:  # a level near the first symbol's first close
        fields["threshold"] = round(src.bar(symbols[0], first).close * condition["price_ratio"], 2)
    rule = AlertCondition.model_validate({"symbol": symbols[0], **fields})

    for s in symbols:
        await monitor.add_symbol(s)
    await monitor.run_once()  # the cursor, at the tick before the warm-up
    clock.set(first - 1)
    await monitor.run_once()  # the volume windows: VOLUME_WINDOW ticks before the window
    ids = {}
    for s in symbols:
        alert = rule.model_copy(update={"symbol": s, "id": f"a-{s}"})
        await mgr.add_alert(alert)
        ids[alert.id] = s
    clock.set(first)
    await monitor.run_once()  # the indicator books load their history at this tick
    clock.set(last)
    await monitor.run_once()  # the rest of the window, tick by tick
    live: dict[str, list[tuple[datetime, float | None, bool]]] = {s: [] for s in symbols}
    for f in reversed(await mgr.history(None, 10_000)):
        live[ids[f.alert_id]].append((f.fired_at, f.value, f.muted))

    answer = await Backtester(fetcher, CALENDARS).run(
        rule, symbols, day_of(src, first), day_of(src, last)
    )
    for result in answer.symbols:
        assert result.observations == length
        assert result.suppressed.closed_market_count == 0  # NYSE days: the calendar agrees
        want = [(f.time, f.value, f.muted) for f in result.fires]
        assert live[result.symbol] == want, (rule, result.symbol)
        assert result.fire_count == len(want)
    return answer.fire_count, sum(r.muted_count for r in answer.symbols)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    condition=conditions(),
    symbols=st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=2, unique=True),
    first=st.integers(300, 650),
    length=st.integers(15, 60),
    cooldown_s=cooldowns,
    snooze_ticks=st.none() | st.integers(0, 20),
)
def test_the_backtest_reports_what_the_live_monitor_fires(
    redis_url: str,
    condition: dict[str, Any],
    symbols: list[str],
    first: int,
    length: int,
    cooldown_s: float,
    snooze_ticks: int | None,
) -> None:
    async def main() -> None:
        client = RedisClient.from_url(redis_url)
        try:
            await check(client, condition, symbols, first, length, cooldown_s, snooze_ticks)
        finally:
            await client.aclose()

    asyncio.run(main())


async def test_a_fixed_rule_fires_and_mutes_alike(redis_boundary: RedisClient) -> None:
    """Not only empty lists agree: an RSI crossing and a price level on two symbols over a
    quarter fire several times, some muted by a snooze, live and in the backtest alike."""
    rsi = {
        "alert_type": "indicator",
        "indicator": {"kind": "rsi", "period": 14},
        "comparison": "crosses_above",
        "threshold": 55.0,
        "rearm_margin": 2.0,
    }
    fires, muted = await check(redis_boundary, rsi, ["AAPL", "MSFT"], 400, 60, 0.0, 10)
    assert fires >= 3 and muted >= 1
    price = {"alert_type": "price_threshold", "price_ratio": 1.0, "comparison": "above"}
    fires, _ = await check(redis_boundary, price, ["IBM"], 500, 60, 0.0, None)
    assert fires >= 2


@pytest.mark.parametrize(
    "condition",
    [
        {"alert_type": "price_threshold", "price_ratio": 0.8, "comparison": "below"},
        {"alert_type": "volume_spike", "threshold": 1.8, "comparison": "above"},
        {
            "alert_type": "indicator",
            "indicator": {"kind": "drawdown", "period": 20},
            "comparison": "above",
            "threshold": 30.0,
        },
        {
            "alert_type": "indicator",
            "indicator": {"kind": "sma", "period": 10},
            "comparison": "crosses_below",
            "price_ratio": 0.95,
        },
    ],
    ids=["price", "volume", "drawdown", "sma"],
)
async def test_a_split_in_the_window_is_rebased_alike(
    redis_boundary: RedisClient, condition: dict[str, Any]
) -> None:
    """AAPL's 2:1 of 2005-02-28 inside the window: the live monitor's split guard re-bases
    the rule, the volume window and the indicator book; the backtest does the same, so they
    agree (and a halved price fires neither)."""
    start = "2004-06-01"
    src = ReplaySource(start, step=1)
    split_tick = next(t for t in range(400) if src.bar("AAPL", t).date == "2005-02-28")
    await check(redis_boundary, condition, ["AAPL"], split_tick - 25, 50, 0.0, None, start)
