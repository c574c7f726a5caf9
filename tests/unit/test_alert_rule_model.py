"""Issue 19's rule model: the crossing truth table, hysteresis, snooze, all_of, indicator
alerts and the validation of every bad combination (alerts/rules.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.rules import (
    AlertCondition,
    AlertState,
    AlertType,
    Evaluation,
    Indicator,
    Outcome,
    evaluate,
    initial_state,
    transition,
    why,
)
from marketpulse.market.quotes import StockData

T0 = datetime(2026, 1, 5, tzinfo=UTC)


class Values:
    """A stub ``IndicatorValues``: one value per spec, set by the test."""

    def __init__(self, values: dict[Indicator, float | None] | None = None) -> None:
        self.values = values or {}

    def value(self, spec: Indicator) -> float | None:
        return self.values.get(spec)


def quote(price: float = 100.0, prev: float = 100.0) -> StockData:
    return StockData(
        symbol="AAPL", price=price, volume=1000, timestamp=T0, high=price, low=price,
        open=price, close=prev, previous_close=prev,
    )  # fmt: skip


def alert(**kw: Any) -> AlertCondition:
    data: dict[str, Any] = {
        "symbol": "AAPL", "alert_type": "price_threshold", "threshold": 150.0, "comparison": "above"
    }  # fmt: skip
    data.update(kw)
    return AlertCondition.model_validate({k: v for k, v in data.items() if v is not None})


RSI = Indicator(kind="rsi")


def run(
    a: AlertCondition,
    prices: list[float] | None = None,
    *,
    rsi: list[float] | None = None,
    snoozed_until: float | None = None,
) -> tuple[list[Outcome], list[AlertState]]:
    """Every observation through evaluate() and transition(), from the alert's initial state."""
    state, outcomes, states = initial_state(a), [], []
    n = len(prices if prices is not None else rsi or [])
    for i in range(n):
        q = quote(prices[i] if prices is not None else 100.0)
        ind = Values({RSI: rsi[i]}) if rsi is not None else None
        ev = evaluate(a, q, volumes=[], indicators=ind)
        assert ev is not None
        state, o = transition(
            state, obs=i, ev=ev, at=float(i), cooldown_s=a.cooldown_s, expires_at=None,
            snoozed_until=snoozed_until,
        )  # fmt: skip
        outcomes.append(o)
        states.append(state)
    return outcomes, states


def fires(outcomes: list[Outcome]) -> list[int]:
    return [i for i, o in enumerate(outcomes) if o is Outcome.FIRED]


# (comparison, prices, observations that fire): the truth table of docs/alerts.md
TRUTH_TABLE = [
    # a new alert already true: above/below fire at once, crosses need a false one first
    ("above", [151], [0]),
    ("crosses_above", [151], []),
    ("below", [149], [0]),
    ("crosses_below", [149], []),
    # false, then true: every kind fires at the crossing
    ("above", [149, 151], [1]),
    ("crosses_above", [149, 151], [1]),
    ("below", [151, 149], [1]),
    ("crosses_below", [151, 149], [1]),
    # true, true: fires once (at once for above/below), never for crosses (no false seen)
    ("above", [151, 152], [0]),
    ("crosses_above", [151, 152], []),
    ("below", [149, 148], [0]),
    ("crosses_below", [149, 148], []),
    # after a fire: true again fires nothing; false then true fires again
    ("above", [149, 151, 152, 149, 151], [1, 4]),
    ("crosses_above", [149, 151, 152, 149, 151], [1, 4]),
    ("below", [151, 149, 148, 151, 149], [1, 4]),
    ("crosses_below", [151, 149, 148, 151, 149], [1, 4]),
    # exactly at the threshold counts as reached, both ways
    ("crosses_above", [149, 150], [1]),
    ("crosses_below", [151, 150], [1]),
]


@pytest.mark.parametrize(("comparison", "prices", "expected"), TRUTH_TABLE)
def test_crossing_truth_table(comparison: str, prices: list[float], expected: list[int]) -> None:
    outcomes, _ = run(alert(comparison=comparison), prices)
    assert fires(outcomes) == expected


def test_a_crossing_starts_disarmed_and_any_other_armed() -> None:
    assert not initial_state(alert(comparison="crosses_above")).armed
    assert not initial_state(alert(comparison="crosses_below")).armed
    assert initial_state(alert(comparison="above")).armed
    assert initial_state(alert(comparison="below")).armed


def test_rsi_straddling_30_with_a_one_point_margin_fires_once() -> None:
    a = alert(
        alert_type="indicator", indicator={"kind": "rsi", "period": 14}, comparison="below",
        threshold=30, rearm_margin=1.0,
    )  # fmt: skip
    straddle = [35.0, 29.9, 30.4, 29.6, 30.9, 29.8, 30.2, 29.95]
    outcomes, _ = run(a, rsi=straddle)
    assert fires(outcomes) == [1]
    # beyond the margin (> 31) it re-arms, and the next dip fires again
    outcomes, _ = run(a, rsi=[*straddle, 31.2, 29.7])
    assert fires(outcomes) == [1, 9]
    assert outcomes[8] is Outcome.REARMED
    # without a margin the same straddle fires at every dip
    plain = a.model_copy(update={"rearm_margin": 0.0})
    assert fires(run(plain, rsi=straddle)[0]) == [1, 3, 5, 7]


def test_margin_on_above_and_on_a_percentage_fall() -> None:
    up = alert(threshold=100, comparison="above", rearm_margin=2)
    assert fires(run(up, [101, 99, 101, 97.9, 100])[0]) == [0, 4]
    fall = alert(alert_type="percentage_change", threshold=5, comparison="below", rearm_margin=1)
    # -5 % fires; -4.5 % is within the margin; -3.9 % re-arms; -5.1 % fires again
    assert fires(run(fall, [95, 95.5, 95, 96.1, 94.9])[0]) == [0, 4]


def test_evaluation_tri_state() -> None:
    a = alert(threshold=100, comparison="above", rearm_margin=2)
    tri = [evaluate(a, quote(p), volumes=[], indicators=None) for p in (100, 99, 97.5)]
    assert [e.tri if e else None for e in tri] == ["true", "margin", "rearm"]


def test_a_snoozed_fire_is_a_muted_fire_and_disarms() -> None:
    a = alert(threshold=150, comparison="above")
    outcomes, states = run(a, [151, 149, 151, 149, 151], snoozed_until=3.0)
    assert fires(outcomes) == [0, 2, 4]
    assert [states[i].muted for i in (0, 2, 4)] == [True, True, False]
    assert not states[0].armed  # muted or not, a fire disarms


def test_all_of_is_true_when_every_clause_is_and_rearms_when_any_is_beyond_its_margin() -> None:
    a = alert(
        alert_type="all_of", comparison="above", threshold=None,
        all_of=[
            {"alert_type": "price_threshold", "comparison": "above", "threshold": 2800},
            {"alert_type": "indicator", "indicator": {"kind": "rsi"}, "comparison": "above",
             "threshold": 70, "rearm_margin": 5},
        ],
    )  # fmt: skip
    ev = evaluate(a, quote(2810), volumes=[], indicators=Values({RSI: 71.2}))
    assert ev == Evaluation(True, False, None, (("price", 2810.0), ("RSI(14)", 71.2)))
    assert why(a, ev) == "price 2810 >= 2800 and RSI(14) 71.2 >= 70"
    within = evaluate(a, quote(2810), volumes=[], indicators=Values({RSI: 67.0}))
    assert within is not None and within.tri == "margin"
    beyond = evaluate(a, quote(2790), volumes=[], indicators=Values({RSI: 67.0}))
    assert beyond is not None and beyond.tri == "rearm"
    # a clause without a value (warm-up, no indicators) leaves the whole alert without one
    assert evaluate(a, quote(2810), volumes=[], indicators=Values({RSI: None})) is None
    assert evaluate(a, quote(2810), volumes=[], indicators=None) is None


def test_a_fire_carries_its_values_and_why() -> None:
    a = alert(alert_type="indicator", indicator={"kind": "rsi"}, comparison="above", threshold=70)
    ev = evaluate(a, quote(), volumes=[], indicators=Values({RSI: 71.25}))
    assert ev is not None
    fired = FiredAlert.of(a, ev.value, quote(), 7, ev=ev, muted=True)
    assert (fired.values, fired.why, fired.muted) == (
        {"RSI(14)": 71.25},
        "RSI(14) 71.25 >= 70",
        True,
    )
    assert fired.describe().startswith("MUTED (snoozed) ALERT AAPL indicator above 70")
    fall = alert(alert_type="percentage_change", threshold=5, comparison="below")
    ev = evaluate(fall, quote(94), volumes=[], indicators=None)
    assert ev is not None and why(fall, ev) == "change % -6 <= -5"


def test_the_seed_constructor_and_simple_alerts_are_unchanged() -> None:
    a = AlertCondition(
        symbol="AAPL", alert_type=AlertType.PRICE_THRESHOLD, threshold=150, comparison="above"
    )
    assert a.simple and a.direction == "above" and a.indicators() == []
    assert not alert(comparison="crosses_above").simple
    assert not alert(rearm_margin=1).simple
    assert not alert(snoozed_until=T0).simple
    assert not alert(alert_type="indicator", indicator={"kind": "sma", "period": 5}).simple


def test_indicator_specs_take_their_defaults_and_labels() -> None:
    assert Indicator(kind="rsi") == Indicator(kind="rsi", period=14)
    cross = Indicator.model_validate({"kind": "ma_cross", "fast": 10, "slow": 50})
    assert cross.average == "sma" and cross.label == "SMA(10)/SMA(50)"
    assert Indicator(kind="from_52w_high").label == "from 52w high"
    assert Indicator(kind="price_vs_ema", period=20).label == "price vs EMA(20)"


def test_an_ma_cross_takes_any_pair_of_periods() -> None:
    # a JSON schema cannot compare fast with slow, so the API accepts any pair: the value
    # (100 * (fast / slow - 1)) is defined for all of them
    spec = Indicator.model_validate({"kind": "ma_cross", "fast": 50, "slow": 20})
    assert spec.label == "SMA(50)/SMA(20)"


def test_negative_thresholds_only_for_indicators() -> None:
    a = alert(alert_type="indicator", indicator={"kind": "ma_cross", "fast": 5, "slow": 20},
              comparison="crosses_above", threshold=-1.5)  # fmt: skip
    assert a.threshold == -1.5


ALL_OF_CLAUSES = [
    {"alert_type": "price_threshold", "comparison": "above", "threshold": 1},
    {"alert_type": "percentage_change", "comparison": "below", "threshold": 2},
]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"alert_type": "indicator"}, "an indicator alert needs 'indicator'"),
        ({"indicator": {"kind": "rsi"}}, "'indicator' is only for alert_type 'indicator'"),
        ({"all_of": ALL_OF_CLAUSES}, "'all_of' is only for alert_type 'all_of'"),
        ({"alert_type": "all_of", "threshold": 0}, "2 to 5 clauses, got 0"),
        ({"alert_type": "all_of", "threshold": 0, "all_of": ALL_OF_CLAUSES[:1]}, "got 1"),
        ({"alert_type": "all_of", "threshold": 0, "all_of": ALL_OF_CLAUSES * 3}, "got 6"),
        (
            {
                "alert_type": "all_of",
                "threshold": 0,
                "all_of": ALL_OF_CLAUSES,
                "comparison": "below",
            },
            "comparison must be 'above'",
        ),
        (
            {
                "alert_type": "all_of",
                "threshold": 0,
                "all_of": ALL_OF_CLAUSES,
                "comparison": "crosses_below",
            },
            "comparison must be 'above'",
        ),
        ({"alert_type": "all_of", "threshold": 3, "all_of": ALL_OF_CLAUSES}, "takes no threshold"),
        (
            {
                "alert_type": "all_of",
                "threshold": 0,
                "all_of": [
                    *ALL_OF_CLAUSES,
                    {"alert_type": "all_of", "comparison": "above", "threshold": 0},
                ],
            },
            "unknown alert type 'all_of'",
        ),
        (
            {
                "alert_type": "all_of",
                "threshold": 0,
                "all_of": [
                    *ALL_OF_CLAUSES,
                    {
                        "alert_type": "price_threshold",
                        "comparison": "crosses_above",
                        "threshold": 1,
                    },
                ],
            },
            "comparison must be 'above' or 'below', got 'crosses_above'",
        ),
        (
            {
                "alert_type": "all_of",
                "threshold": 0,
                "all_of": [
                    *ALL_OF_CLAUSES,
                    {"alert_type": "price_threshold", "comparison": "above", "threshold": -1},
                ],
            },
            "threshold must be >= 0",
        ),
        (
            {
                "alert_type": "all_of",
                "threshold": 0,
                "all_of": [
                    *ALL_OF_CLAUSES,
                    {"alert_type": "indicator", "comparison": "above", "threshold": 1},
                ],
            },
            "needs 'indicator'",
        ),
        ({"threshold": -5}, "threshold must be >= 0"),
        ({"alert_type": "volume_spike", "threshold": -5}, "threshold must be >= 0"),
        ({"rearm_margin": -1}, "rearm_margin must be >= 0"),
        ({"rearm_margin": math.nan}, "finite"),
        ({"rearm_margin": math.inf}, "finite"),
        ({"cooldown_s": math.inf}, "finite"),
        ({"comparison": "crosses"}, "comparison must be"),
        ({"alert_type": "indicator", "indicator": {"kind": "macd"}}, "unknown indicator kind"),
        ({"alert_type": "indicator", "indicator": {"kind": "sma"}}, "sma needs period"),
        ({"alert_type": "indicator", "indicator": {"kind": "rsi", "period": 0}}, "1..400"),
        ({"alert_type": "indicator", "indicator": {"kind": "ema", "period": 401}}, "1..400"),
        ({"alert_type": "indicator", "indicator": {"kind": "ema", "period": 2.5}}, "1..400"),
        ({"alert_type": "indicator", "indicator": {"kind": "ema", "period": True}}, "1..400"),
        (
            {"alert_type": "indicator", "indicator": {"kind": "ma_cross", "fast": 5}},
            "ma_cross needs slow",
        ),
        (
            {
                "alert_type": "indicator",
                "indicator": {"kind": "ma_cross", "fast": 5, "slow": 9, "average": "wma"},
            },
            "'sma' or 'ema'",
        ),
        (
            {"alert_type": "indicator", "indicator": {"kind": "from_52w_high", "period": 5}},
            "from_52w_high takes no period",
        ),
        (
            {"alert_type": "indicator", "indicator": {"kind": "rsi", "fast": 5}},
            "rsi takes no fast",
        ),
        ({"alert_type": "indicator", "indicator": {"kind": "rsi", "window": 5}}, "Extra inputs"),
    ],
)
def test_every_bad_combination_is_refused_with_a_clear_message(
    fields: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ValidationError, match=needle):
        alert(**fields)
