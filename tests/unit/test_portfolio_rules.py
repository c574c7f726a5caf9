"""The portfolio alerts' pure model (``alerts/portfolio_rules.py``): the time-weighted index
ignores deposits and withdrawals, a sold ticker leaves the return, a new day takes the previous
valuation as its reference, drift and metric truths, and the shapes the model refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from marketpulse.alerts.channels import routed
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.portfolio_rules import (
    PortfolioAlert,
    advance,
    evaluate_result,
    evaluate_valuation,
    fire,
)
from marketpulse.alerts.rules import Evaluation


def test_a_deposit_moves_the_value_not_the_index() -> None:
    t = advance(None, tick=1, day="2024-01-02", quantities={"A": 10}, units={"A": 100.0},
                total=1000.0)  # fmt: skip
    t = advance(t, tick=2, day="2024-01-02", quantities={"A": 10}, units={"A": 90.0}, total=900.0)
    assert t.index == pytest.approx(0.9) and t.drawdown_pct == pytest.approx(10.0)
    # a deposit: 90 more shares bought at 90; the next valuation's prices are unchanged
    t = advance(t, tick=3, day="2024-01-02", quantities={"A": 100}, units={"A": 90.0},
                total=9000.0)  # fmt: skip
    assert t.index == pytest.approx(0.9) and t.peak == 1.0
    # then +10 %: the index follows the return, whatever the amount held
    t = advance(t, tick=4, day="2024-01-02", quantities={"A": 100}, units={"A": 99.0},
                total=9900.0)  # fmt: skip
    assert t.index == pytest.approx(0.99) and t.drawdown_pct == pytest.approx(1.0)


def test_a_sold_ticker_leaves_the_return_and_a_bought_one_enters_it_next() -> None:
    t = advance(None, tick=1, day="d", quantities={"A": 1, "B": 1}, units={"A": 100.0, "B": 100.0},
                total=200.0)  # fmt: skip
    # B sold (not priced any more), A +10 %: the return is A's alone
    t = advance(t, tick=2, day="d", quantities={"A": 1, "C": 5}, units={"A": 110.0, "C": 20.0},
                total=210.0)  # fmt: skip
    assert t.index == pytest.approx(1.10)
    # C (bought) counts from here: A flat, C -50 % -> (110 + 50) / (110 + 100)
    t = advance(t, tick=3, day="d", quantities={"A": 1, "C": 5}, units={"A": 110.0, "C": 10.0},
                total=160.0)  # fmt: skip
    assert t.index == pytest.approx(1.10 * 160 / 210)


def test_the_day_reference_is_the_last_valuation_of_the_previous_day() -> None:
    t = advance(None, tick=1, day="2024-01-02", quantities={"A": 1}, units={"A": 100.0},
                total=100.0)  # fmt: skip
    t = advance(t, tick=2, day="2024-01-02", quantities={"A": 1}, units={"A": 104.0}, total=104.0)
    assert t.day_change_pct == pytest.approx(4.0)  # first day: against its first valuation
    t = advance(t, tick=3, day="2024-01-03", quantities={"A": 1}, units={"A": 101.4}, total=101.4)
    assert t.day_change_pct == pytest.approx(-2.5)  # against 104, the previous day's last
    alert = PortfolioAlert(kind="day_change_pct", comparison="below", threshold=-2)
    judged = evaluate_valuation(alert, t)
    assert judged is not None and judged[0].truth
    assert judged[1] == [{"ticker": "A", "amount": -2.6, "share": 1.0}]


def test_drift_is_true_strictly_outside_the_band_and_rearms_inside_the_margin() -> None:
    t = advance(None, tick=1, day="d", quantities={"A": 3, "B": 1}, units={"A": 10.0, "B": 10.0},
                total=40.0)  # fmt: skip
    # weights 75 / 25 against 60 / 40: 15 points away
    on_edge = PortfolioAlert(kind="drift", targets={"A": 60, "B": 40}, band=15)
    inside = evaluate_valuation(on_edge, t)
    assert inside is not None and not inside[0].truth and inside[0].value == pytest.approx(15)
    tight = PortfolioAlert(kind="drift", targets={"A": 60, "B": 40}, band=14, rearm_margin=2)
    ev, rows = evaluate_valuation(tight, t) or (None, [])
    assert ev is not None and ev.truth
    assert [(r["ticker"], r["drift"]) for r in rows] == [("A", 15.0), ("B", -15.0)]
    near = PortfolioAlert(kind="drift", targets={"A": 60, "B": 40}, band=16, rearm_margin=2)
    ev2 = (evaluate_valuation(near, t) or (None, []))[0]
    assert ev2 is not None and not ev2.truth and not ev2.rearm  # 15 > 16 - 2: within the margin


def test_a_metric_alert_reads_its_own_ticker_and_metric_only() -> None:
    risk = PortfolioAlert(kind="metric", ticker="AAPL", metric="portfolio_risk", threshold=0.4)
    assert evaluate_result(risk, "MSFT", "portfolio_risk", 0.9, {}) is None
    assert evaluate_result(risk, "AAPL", "concentration", 0.9, {}) is None
    assert evaluate_result(risk, "AAPL", "portfolio_risk", None, {}) is None  # a null metric
    ev, _ = evaluate_result(risk, "AAPL", "portfolio_risk", 0.41, {}) or (None, [])
    assert ev is not None and ev.truth
    turn = PortfolioAlert(
        kind="metric", ticker="AAPL", metric="allocation_score", action="decrease"
    )
    ev, _ = evaluate_result(turn, "AAPL", "allocation_score", -0.3, {"action": "decrease"}) or (
        None,
        [],
    )
    assert ev is not None and ev.truth
    ev, _ = evaluate_result(turn, "AAPL", "allocation_score", 0.0, {"action": "hold"}) or (None, [])
    assert ev is not None and not ev.truth and ev.rearm


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"kind": "drift", "band": 5}, "targets"),
        ({"kind": "drift", "targets": {"A": 70, "B": 40}, "band": 5}, "over 100"),
        ({"kind": "drawdown_from_peak", "threshold": 10, "comparison": "below"}, "above"),
        ({"kind": "metric", "ticker": "AAPL", "metric": "beta"}, "metric"),
        (
            {"kind": "metric", "ticker": "AAPL", "metric": "momentum", "action": "increase"},
            "action",
        ),
        ({"kind": "total_value", "threshold": 5, "band": 2}, "drift"),
        ({"kind": "total_value", "threshold": float("nan")}, "finite"),
    ],
)
def test_bad_shapes_are_refused_with_the_reason(body: dict[str, object], said: str) -> None:
    with pytest.raises(ValidationError, match=said):
        PortfolioAlert.model_validate(body)


def test_a_portfolio_alert_routes_to_the_channels_it_names() -> None:
    """Like a price alert (docs/alerts.md, Channels): a fire goes to the named channels only;
    one that names none goes to the built-in ones."""
    ev = Evaluation(truth=True, rearm=False, value=120.0, values=(("total", 120.0),))
    at = datetime(2026, 12, 7, tzinfo=UTC)

    def fired(**extra: object) -> FiredAlert:
        alert = PortfolioAlert.model_validate({"kind": "total_value", "threshold": 100, **extra})
        return fire(alert, ev, [], session_id="s1", base_currency="USD", observation=1, at=at,
                    total=120.0)  # fmt: skip

    named = fired(channels=["ops-mail"])
    assert named.routes == ("ops-mail",)
    assert routed(named, "ops-mail", named=True)
    assert not routed(named, "tg", named=True) and not routed(named, "console", named=False)
    default = fired()
    assert default.routes is None
    assert routed(default, "console", named=False) and not routed(default, "ops-mail", named=True)
    with pytest.raises(ValidationError, match="channel"):
        PortfolioAlert.model_validate({"kind": "total_value", "channels": ["Bad Name"]})
