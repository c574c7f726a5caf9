"""Edges of every alert rule: at the threshold, back and forth, first observation, cooldown,
expiry, missing baseline, stale or insane data, and input validation."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from marketpulse.alerts.rules import (
    AlertCondition,
    AlertState,
    AlertType,
    Outcome,
    holds,
    observed_value,
    transition,
    usable,
)
from marketpulse.market.quotes import StockData

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def quote(
    price: float = 100.0, volume: int = 1000, prev: float | None = 100.0, **kw: object
) -> StockData:
    fields: dict[str, object] = {
        "symbol": "AAPL", "price": price, "volume": volume, "timestamp": T0,
        "high": max(price, 1.0), "low": min(price, 1.0), "open": price, "close": prev or price,
        "previous_close": prev,
    }  # fmt: skip
    fields.update(kw)
    return StockData.model_validate(fields)


def cond(t: AlertType, threshold: float, comparison: str, **kw: object) -> AlertCondition:
    return AlertCondition(
        symbol="AAPL", alert_type=t, threshold=threshold, comparison=comparison, **kw
    )


def run(c: AlertCondition, values: list[float], times: list[float] | None = None) -> list[Outcome]:
    """Feed observed values through the edge-triggered state machine."""
    state, out, prev = AlertState(), [], False
    for i, v in enumerate(values):
        truth = holds(c, v)
        at = times[i] if times else float(i)
        exp = c.expires_at.timestamp() if c.expires_at else None
        if truth != prev or i == 0:
            state, o = transition(
                state, obs=i, truth=truth, at=at, cooldown_s=c.cooldown_s, expires_at=exp
            )
            out.append(o)
        prev = truth
    return out


def fired(outcomes: list[Outcome]) -> int:
    return sum(o is Outcome.FIRED for o in outcomes)


def test_price_exactly_at_threshold_is_true_for_both_comparisons() -> None:
    assert holds(cond(AlertType.PRICE_THRESHOLD, 150, "above"), 150.0)
    assert holds(cond(AlertType.PRICE_THRESHOLD, 150, "below"), 150.0)
    assert not holds(cond(AlertType.PRICE_THRESHOLD, 150, "above"), 149.99)
    assert not holds(cond(AlertType.PRICE_THRESHOLD, 150, "below"), 150.01)


def test_crossing_back_and_forth_fires_once_per_crossing() -> None:
    c = cond(AlertType.PRICE_THRESHOLD, 150, "above")
    assert fired(run(c, [140, 151, 152, 149, 150, 160, 140, 155])) == 3


def test_first_observation_already_true_fires() -> None:
    c = cond(AlertType.PRICE_THRESHOLD, 150, "above")
    assert run(c, [151])[0] is Outcome.FIRED
    assert run(c, [149]) == [Outcome.UNCHANGED]


def test_cooldown_suppresses_a_recrossing_inside_it_then_allows_one_after() -> None:
    c = cond(AlertType.PRICE_THRESHOLD, 150, "above", cooldown_s=10)
    outcomes = run(c, [151, 149, 151, 149, 151], times=[0, 2, 5, 8, 10])
    assert outcomes == [
        Outcome.FIRED, Outcome.REARMED, Outcome.SUPPRESSED, Outcome.REARMED, Outcome.FIRED,
    ]  # fmt: skip


def test_expired_alert_never_fires() -> None:
    c = cond(AlertType.PRICE_THRESHOLD, 150, "above", expires_at=datetime.fromtimestamp(5, UTC))
    assert run(c, [151, 140, 151], times=[4, 4.5, 5]) == [
        Outcome.FIRED, Outcome.REARMED, Outcome.EXPIRED,
    ]  # fmt: skip


def test_duplicate_observation_changes_nothing() -> None:
    s, o = transition(AlertState(), obs=3, truth=True, at=0, cooldown_s=0, expires_at=None)
    assert o is Outcome.FIRED
    assert transition(s, obs=3, truth=True, at=0, cooldown_s=0, expires_at=None) == (
        s,
        Outcome.DUPLICATE,
    )
    assert (
        transition(s, obs=2, truth=False, at=0, cooldown_s=0, expires_at=None)[1]
        is Outcome.DUPLICATE
    )


def test_percentage_change_is_against_previous_close_and_below_is_a_fall() -> None:
    assert observed_value(AlertType.PERCENTAGE_CHANGE, quote(105.0, prev=100.0)) == pytest.approx(
        5.0
    )
    up = cond(AlertType.PERCENTAGE_CHANGE, 5, "above")
    down = cond(AlertType.PERCENTAGE_CHANGE, 5, "below")
    assert holds(up, 5.0)
    assert not holds(up, 4.99)
    assert not holds(up, -6)
    assert holds(down, -5.0)
    assert not holds(down, -4.99)
    assert not holds(down, 6)


def test_percentage_change_without_baseline_has_no_value() -> None:
    q = quote(105.0, prev=None, close=0.5).model_copy(update={"close": -1.0})
    assert observed_value(AlertType.PERCENTAGE_CHANGE, q) is None


def test_volume_spike_needs_twenty_earlier_observations_excluding_current() -> None:
    q = quote(volume=3000)
    assert observed_value(AlertType.VOLUME_SPIKE, q, [1000] * 19) is None
    assert observed_value(AlertType.VOLUME_SPIKE, q, [1000] * 20) == pytest.approx(3.0)
    assert observed_value(AlertType.VOLUME_SPIKE, q, [9] * 5 + [1000] * 20) == pytest.approx(3.0)
    assert observed_value(AlertType.VOLUME_SPIKE, q, [0] * 20) is None
    c = cond(AlertType.VOLUME_SPIKE, 3, "above")
    assert holds(c, 3.0)
    assert not holds(c, 2.99)


def test_stale_or_insane_quotes_are_not_usable() -> None:
    assert usable(quote())
    assert not usable(quote().model_copy(update={"stale": True}))
    assert not usable(quote().model_copy(update={"price": math.nan}))
    assert not usable(quote().model_copy(update={"high": 0.5, "low": 2.0}))


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("alert_type", "price_jump", "unknown alert type"),
        ("comparison", "equals", "comparison must be 'above' or 'below'"),
        ("threshold", -1.0, "threshold must be >= 0"),
        ("threshold", math.nan, "finite"),
        ("threshold", math.inf, "finite"),
        ("symbol", "AA PL", "invalid symbol"),
        ("symbol", "", "invalid symbol"),
        ("cooldown_s", -5, "greater than or equal to 0"),
    ],
)
def test_invalid_conditions_are_rejected_with_a_clear_message(
    field: str, value: object, needle: str
) -> None:
    data: dict[str, object] = {
        "symbol": "AAPL",
        "alert_type": "price_threshold",
        "threshold": 1.0,
        "comparison": "above",
    }
    data[field] = value
    with pytest.raises(ValidationError, match=needle):
        AlertCondition.model_validate(data)


def test_symbol_and_words_are_normalized() -> None:
    c = AlertCondition.model_validate(
        {
            "symbol": " tcs.ns ",
            "alert_type": "PRICE_THRESHOLD",
            "threshold": 4000,
            "comparison": "Above",
        }
    )
    assert (c.symbol, c.alert_type, c.comparison) == ("TCS.NS", AlertType.PRICE_THRESHOLD, "above")
    assert c.id
    assert len(c.id) == 32
