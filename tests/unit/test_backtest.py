"""The backtest's own answers on made-up bars (pure ``replay``): suppression by cooldown and by
a closed market, muted fires, time in the true state, expiry, the listing bound, the range
bound. That the fires equal the live monitor's is tests/integration/test_backtest_property.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from marketpulse.alerts.backtest import (
    MAX_LISTED,
    MAX_RANGE_DAYS,
    Backtester,
    SymbolResult,
    bounded_range,
    replay,
)
from marketpulse.alerts.rules import AlertCondition
from marketpulse.errors import NotReplayable
from marketpulse.market.calendar import Calendars
from marketpulse.market.quotes import Bar, StockData

DAY = 86_400.0


def bars(closes: list[float], first: date = date(2025, 1, 1), volume: int = 1000) -> list[Bar]:
    """One bar a calendar day (every day a session unless a calendar says otherwise)."""
    return [
        Bar((first + timedelta(days=i)).isoformat(), c, c, c, c, c, volume)
        for i, c in enumerate(closes)
    ]


def price(comparison: str = "above", threshold: float = 10.0, **kw: object) -> AlertCondition:
    return AlertCondition.model_validate(
        {"symbol": "X", "alert_type": "price_threshold", "threshold": threshold,
         "comparison": comparison, **kw}
    )  # fmt: skip


class NoFeed:
    """A feed the tests never read (the pure ``replay`` is handed its bars)."""

    async def history(self, symbol: str, n: int = 253, *, tick: int | None = None) -> list[Bar]:
        raise AssertionError("not read")

    async def fetch_stock_data(self, symbol: str, *, tick: int | None = None) -> StockData:
        raise AssertionError("not read")

    async def fetch_batch_data(
        self, symbols: Sequence[str], *, tick: int | None = None
    ) -> dict[str, StockData]:
        raise AssertionError("not read")


def run(rule: AlertCondition, closes: list[float]) -> SymbolResult:
    """``rule`` over ``closes``: the first is the warm-up, the others the range."""
    history = bars(closes)
    start = date.fromisoformat(history[1].date)
    return replay(rule, "X", history, start, date.fromisoformat(history[-1].date))


def test_fires_once_per_crossing_and_counts_the_time_true() -> None:
    out = run(price(), [5, 11, 12, 9, 13, 8])  # in range: 11 12 9 13 8
    assert [f.fired_at.day for f in out.fires] == [2, 5]
    assert out.fire_count == 2 and out.observations == 5 and out.evaluated == 5
    assert out.sessions_true == 3
    assert out.seconds_true == 3 * DAY  # each true day holds until the next observation
    assert [f.value for f in out.fires] == [11, 13]
    assert out.fires[0].why == "price 11 >= 10" and out.fires[0].quote.previous_close == 5


def test_a_rule_true_on_the_last_day_holds_until_the_range_ends() -> None:
    out = run(price(), [5, 9, 11])
    assert out.sessions_true == 1 and out.seconds_true == DAY  # to the end of the last day


def test_a_crossing_needs_a_false_observation_first() -> None:
    assert run(price("crosses_above"), [5, 11, 12, 9, 13]).fire_count == 1  # only 13
    assert run(price("above"), [5, 11, 12, 9, 13]).fire_count == 2


def test_the_cooldown_suppresses_and_lists_the_crossing() -> None:
    out = run(price(cooldown_s=3 * DAY), [5, 11, 9, 11, 9, 9, 11])
    assert [f.fired_at.day for f in out.fires] == [2, 7]
    assert out.cooldown_count == 1 and out.cooldown[0].time.day == 4
    assert out.cooldown[0].value == 11 and out.cooldown[0].quote.price == 11


def test_a_snoozed_fire_is_a_muted_fire() -> None:
    until = datetime(2025, 1, 4, 12, tzinfo=UTC)
    out = run(price(snoozed_until=until), [5, 11, 9, 11, 9, 11])
    assert [(f.fired_at.day, f.muted) for f in out.fires] == [(2, True), (4, True), (6, False)]
    assert out.muted_count == 2 and out.fire_count == 3


def test_an_expired_rule_stops() -> None:
    out = run(price(expires_at=datetime(2025, 1, 4, tzinfo=UTC)), [5, 11, 9, 11, 9, 11])
    assert [f.fired_at.day for f in out.fires] == [2]
    assert out.expired_at is not None and out.expired_at.day == 4


def test_a_day_without_a_session_is_not_observed() -> None:
    """2025-01-01 (New Year), 01-04 and 01-05 (a weekend) and 01-09 (a national day of
    mourning) are no NYSE sessions: those bars are suppressed, the others observed."""
    is_session = Backtester(NoFeed(), Calendars()).session_test("X")
    assert is_session is not None
    history = bars([5, 11, 12, 13, 14, 9, 9, 11, 12, 12], first=date(2024, 12, 31))
    out = replay(price(), "X", history, date(2025, 1, 1), date(2025, 1, 9), is_session=is_session)
    assert out.closed == ["2025-01-01", "2025-01-04", "2025-01-05", "2025-01-09"]
    assert out.closed_count == 4 and out.observations == 5
    # the previous close of 01-02 is 12-31's (the holiday's bar is skipped)
    assert out.fires[0].quote.previous_close == 5 and out.fires[0].fired_at.day == 2


def test_lists_are_bounded_and_the_counts_exact() -> None:
    closes = [5.0] + [11.0, 9.0] * (MAX_LISTED + 10)
    out = run(price(), closes)
    assert out.fire_count == MAX_LISTED + 10
    assert len(out.fires) == MAX_LISTED and out.truncated
    assert out.result().truncated and out.result().fire_count == MAX_LISTED + 10


def test_a_long_range_is_cut_and_an_empty_one_refused() -> None:
    start, cut = bounded_range(date(2001, 1, 1), date(2012, 12, 31))
    assert cut and start == date(2012, 12, 31) - timedelta(days=MAX_RANGE_DAYS)
    assert bounded_range(date(2012, 1, 1), date(2012, 12, 31)) == (date(2012, 1, 1), False)
    with pytest.raises(NotReplayable, match="end before start"):
        bounded_range(date(2012, 2, 1), date(2012, 1, 1))


def test_volume_spike_has_its_window_from_the_warm_up() -> None:
    rule = AlertCondition(symbol="X", alert_type="volume_spike", threshold=2, comparison="above")
    history = bars([10.0] * 25)
    history[-1] = Bar(history[-1].date, 10, 10, 10, 10, 10, 5000)  # 5x the mean of the 20 before
    start = date.fromisoformat(history[20].date)
    out = replay(rule, "X", history, start, date.fromisoformat(history[-1].date))
    assert out.warmup == 20 and out.evaluated == 5  # a value from the first day of the range
    assert [f.value for f in out.fires] == [5.0]
