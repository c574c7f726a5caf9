"""The five metrics and their inputs, on synthetic histories (no Redis, no clock)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketpulse.errors import InsufficientHistory, NotInPortfolio, ValidationFailed
from marketpulse.sessions.metrics import (
    METRIC_NAMES,
    MetricResult,
    PortfolioInputs,
    allocation_action,
    build_inputs,
    compute_metric,
    concentration,
    correlation,
    momentum,
    portfolio_risk,
)

History = list[tuple[str, float]]
HAND_COV = np.array([[0.04, 0.01], [0.01, 0.01]])


def trading_days(n: int, start: str = "2020-01-01") -> list[str]:
    first = np.datetime64(start, "D")
    days = np.arange(first, first + np.timedelta64(2 * n + 10, "D"), dtype="datetime64[D]")
    return [str(d) for d in days[np.is_busday(days)][:n]]


def history(dates: Sequence[str], returns: np.ndarray, p0: float = 100.0) -> History:
    prices = p0 * np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    assert len(prices) == len(dates)
    return list(zip(dates, prices.tolist(), strict=True))


def returns_with_cov(cov_annual: np.ndarray, t: int, seed: int = 1) -> np.ndarray:
    """t daily returns whose sample covariance (ddof=1) × 252 is exactly ``cov_annual``."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(t, cov_annual.shape[0]))
    centred = raw - raw.mean(axis=0)
    white = centred @ np.linalg.inv(np.linalg.cholesky(np.cov(centred, rowvar=False))).T
    out: np.ndarray = white @ np.linalg.cholesky(cov_annual / 252).T + 0.0004
    return out


def random_histories(tickers: Sequence[str], n_prices: int, seed: int) -> dict[str, History]:
    rng = np.random.default_rng(seed)
    dates = trading_days(n_prices)
    market = rng.normal(0.0003, 0.01, size=n_prices - 1)
    out = {}
    for k, t in enumerate(tickers):
        beta = rng.uniform(-0.5, 1.5)
        r = beta * market + rng.normal(0, 0.005 + 0.003 * k, size=n_prices - 1)
        out[t] = history(dates, r, p0=float(rng.uniform(5, 500)))
    return out


def all_results(inputs: PortfolioInputs) -> dict[tuple[str, str], MetricResult]:
    return {(t, m): compute_metric(m, inputs, t) for t in inputs.tickers for m in METRIC_NAMES}


def hand_inputs() -> PortfolioInputs:
    dates = trading_days(253)
    r = returns_with_cov(HAND_COV, 252)
    histories = {"A": history(dates, r[:, 0], 50.0), "B": history(dates, r[:, 1], 20.0)}
    # V = 3 × 20 = 60 and 4 × 10 = 40: market-value weights 0.6 / 0.4 (share counts are 3 / 4).
    return build_inputs({"A": 3, "B": 4}, {"A": 20.0, "B": 10.0}, histories)


# --- the hand-checkable case, through build_inputs -------------------------------------------


def test_hand_case_inputs() -> None:
    inputs = hand_inputs()
    assert inputs.tickers == ("A", "B")
    assert inputs.weights == pytest.approx([0.6, 0.4], abs=1e-15)
    assert inputs.n_returns == 252
    assert inputs.cov is not None
    assert inputs.cov == pytest.approx(HAND_COV, rel=1e-9)


def test_hand_case_metrics() -> None:
    inputs = hand_inputs()
    a = portfolio_risk(inputs, "A")
    b = portfolio_risk(inputs, "B")
    assert a.value == pytest.approx(0.8077, abs=5e-5)
    assert b.value == pytest.approx(0.1923, abs=5e-5)
    assert a.details["sigma_p"] == pytest.approx(0.144222, abs=5e-7)
    assert correlation(inputs, "A").value == pytest.approx(0.5, abs=1e-9)
    assert concentration(inputs, "A").value == pytest.approx(0.6)
    alloc_a = compute_metric("allocation_score", inputs, "A")
    alloc_b = compute_metric("allocation_score", inputs, "B")
    assert alloc_a.details["target_weight"] == pytest.approx(1 / 3, abs=1e-9)
    assert alloc_b.details["target_weight"] == pytest.approx(2 / 3, abs=1e-9)
    assert alloc_a.value == pytest.approx((1 / 3 - 0.6) / 0.6, abs=1e-9)
    assert alloc_b.value == pytest.approx((2 / 3 - 0.4) / (2 / 3), abs=1e-9)
    assert (alloc_a.details["action"], alloc_b.details["action"]) == ("decrease", "increase")


def test_momentum_is_weight_times_12_1_return() -> None:
    inputs = hand_inputs()
    dates = trading_days(253)
    r = returns_with_cov(HAND_COV, 252)
    p = np.array([price for _, price in history(dates, r[:, 0], 50.0)])
    m = p[-22] / p[-253] - 1
    result = momentum(inputs, "A")
    assert result.value == pytest.approx(0.6 * m, rel=1e-12)
    assert result.details["momentum_12_1"] == pytest.approx(m, rel=1e-12)


# --- edge cases -------------------------------------------------------------------------------


def test_one_holding() -> None:
    h = random_histories(["X"], 300, seed=3)
    inputs = build_inputs({"X": 10}, {"X": 12.5}, h)
    assert portfolio_risk(inputs, "X").value == 1.0
    conc = concentration(inputs, "X")
    assert conc.value == 1.0
    assert conc.details["overweight"] is True
    corr = correlation(inputs, "X")
    assert (corr.value, corr.reason) == (None, "no_other_holdings")
    alloc = compute_metric("allocation_score", inputs, "X")
    assert (alloc.value, alloc.details["action"]) == (0.0, "hold")


@pytest.mark.parametrize(("n_prices", "enough"), [(60, False), (61, True)])
def test_sixty_common_returns_are_required(n_prices: int, enough: bool) -> None:
    h = random_histories(["A", "B"], n_prices, seed=4)
    inputs = build_inputs({"A": 1, "B": 2}, {"A": 10.0, "B": 10.0}, h)
    assert inputs.n_returns == n_prices - 1
    assert (inputs.cov is not None) is enough
    for name in ("portfolio_risk", "correlation", "allocation_score"):
        result = compute_metric(name, inputs, "A")
        if enough:
            assert result.value is not None
        else:
            assert (result.value, result.reason) == (None, "insufficient_history")
    assert concentration(inputs, "A").value == pytest.approx(1 / 3)


@pytest.mark.parametrize(("n_prices", "has_momentum"), [(252, False), (253, True)])
def test_momentum_needs_253_prices(n_prices: int, has_momentum: bool) -> None:
    h = random_histories(["A", "B"], n_prices, seed=5)
    result = momentum(build_inputs({"A": 1, "B": 1}, {"A": 1.0, "B": 1.0}, h), "A")
    assert (result.value is not None) is has_momentum
    if not has_momentum:
        assert result.reason == "insufficient_history"


def test_inner_join_drops_dates_not_common_to_all() -> None:
    dates = trading_days(120)
    rng = np.random.default_rng(6)
    ra, rb = rng.normal(0, 0.01, size=(2, 119))
    a = history(dates, ra)
    b = history(dates, rb, 30.0)
    del a[50]  # A did not trade that day: B's price there must not be used
    b = sorted([*b, ("2020-01-18", 999.0)])  # a Saturday only B has: dropped
    inputs = build_inputs({"A": 1, "B": 1}, {"A": 1.0, "B": 1.0}, {"A": a, "B": b})
    common = [d for d, _ in a]
    pa = np.array([p for _, p in a])
    pb = np.array([dict(b)[d] for d in common])
    expected = np.cov(np.column_stack([pa[1:] / pa[:-1] - 1, pb[1:] / pb[:-1] - 1]).T) * 252
    assert inputs.n_returns == 118
    assert inputs.as_of == dates[-1]
    assert inputs.cov == pytest.approx(expected, rel=1e-12)


def test_only_the_last_252_returns_are_used() -> None:
    h = random_histories(["A", "B"], 400, seed=8)
    inputs = build_inputs({"A": 1, "B": 1}, {"A": 1.0, "B": 1.0}, h)
    p = np.array([[pa, pb] for (_, pa), (_, pb) in zip(h["A"], h["B"], strict=True)])[-253:]
    assert inputs.n_returns == 252
    assert inputs.cov == pytest.approx(np.cov(p[1:] / p[:-1] - 1, rowvar=False) * 252, rel=1e-12)


@pytest.mark.parametrize("histories", [{"A": [("2020-01-01", 1.0)] * 0}, {}])
def test_a_ticker_with_no_history_is_an_error(histories: Mapping[str, History]) -> None:
    with pytest.raises(InsufficientHistory, match="A"):
        build_inputs({"A": 1}, {"A": 1.0}, histories)


@pytest.mark.parametrize(
    ("holdings", "prices"),
    [
        ({"A": 1, "B": 1}, {"A": 0.0, "B": 1.0}),  # zero price
        ({"A": 0, "B": 0}, {"A": 1.0, "B": 1.0}),  # zero total value
        ({"A": -1, "B": 2}, {"A": 1.0, "B": 1.0}),  # short position
        ({"A": 1, "B": 1}, {"A": 1.0}),  # no price for B
        ({"A": 1, "B": 1}, {"A": float("nan"), "B": 1.0}),
        ({"A": float("inf"), "B": 1}, {"A": 1.0, "B": 1.0}),
        ({}, {}),
    ],
)
def test_bad_holdings_or_prices_are_refused(
    holdings: Mapping[str, float], prices: Mapping[str, float]
) -> None:
    h = random_histories(["A", "B"], 100, seed=9)
    with pytest.raises(ValidationFailed):
        build_inputs(holdings, prices, h)


@pytest.mark.parametrize(
    "bad",
    [
        [("2020-01-02", 1.0), ("2020-01-01", 1.0)],  # out of order
        [("2020-01-01", 1.0), ("2020-01-01", 1.0)],  # duplicate date
        [("2020-01-01", 1.0), ("2020-01-02", 0.0)],  # zero close
        [("2020-01-01", 1.0), ("2020-01-02", float("nan"))],
    ],
)
def test_bad_history_is_refused(bad: History) -> None:
    with pytest.raises(ValidationFailed):
        build_inputs({"A": 1}, {"A": 1.0}, {"A": bad})


def test_not_in_portfolio_and_unknown_metric() -> None:
    inputs = hand_inputs()
    for name in METRIC_NAMES:
        with pytest.raises(NotInPortfolio):
            compute_metric(name, inputs, "ZZZ")
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metric("sharpe", inputs, "A")


def test_constant_price_holding_gives_nulls_with_reasons() -> None:
    h = random_histories(["A", "B"], 100, seed=10)
    h["C"] = [(d, 7.0) for d, _ in h["A"]]
    inputs = build_inputs({"A": 1, "B": 1, "C": 1}, {"A": 1.0, "B": 1.0, "C": 1.0}, h)
    assert portfolio_risk(inputs, "C").value == 0.0
    assert correlation(inputs, "C").reason == "zero_variance"
    assert compute_metric("allocation_score", inputs, "A").reason == "risk_parity_failed"
    flat = {t: [(d, 7.0) for d, _ in h["A"]] for t in ("A", "B")}
    flat_inputs = build_inputs({"A": 1, "B": 1}, {"A": 1.0, "B": 1.0}, flat)
    assert portfolio_risk(flat_inputs, "A").reason == "zero_portfolio_variance"


def test_overweight_rule() -> None:
    # N = 4: threshold 0.25 + min(0.05, 0.0625) = 0.30.
    h = random_histories(list("ABCD"), 100, seed=11)
    prices = dict.fromkeys("ABCD", 1.0)
    over = build_inputs({"A": 31, "B": 23, "C": 23, "D": 23}, prices, h)
    at = build_inputs({"A": 30, "B": 20, "C": 25, "D": 25}, prices, h)  # exactly 0.30: not over
    assert concentration(over, "A").details["overweight"] is True
    assert concentration(at, "A").details["overweight"] is False
    assert concentration(over, "B").details["effective_n"] == pytest.approx(
        1 / (0.31**2 + 3 * 0.23**2)
    )


@pytest.mark.parametrize(
    ("target", "weight", "action"),
    [
        (0.5, 0.56, "decrease"),
        (0.5, 0.54, "hold"),
        (0.1, 0.126, "decrease"),
        (0.1, 0.07, "increase"),
    ],
)
def test_allocation_band(target: float, weight: float, action: str) -> None:
    assert allocation_action(target, weight) == action


def test_correlation_closed_form_matches_corrcoef() -> None:
    tickers = ["A", "B", "C", "D"]
    h = random_histories(tickers, 253, seed=12)
    holdings = {"A": 5, "B": 3, "C": 8, "D": 1}
    prices = {"A": 10.0, "B": 40.0, "C": 7.0, "D": 90.0}
    inputs = build_inputs(holdings, prices, h)
    p = np.array([[price for _, price in h[t]] for t in tickers]).T
    r = p[1:] / p[:-1] - 1
    w = inputs.weights
    for i, t in enumerate(tickers):
        rest = [j for j in range(4) if j != i]
        r_rest = r[:, rest] @ (w[rest] / (1 - w[i]))
        expected = np.corrcoef(r[:, i], r_rest)[0, 1]
        assert correlation(inputs, t).value == pytest.approx(expected, abs=1e-12)
        assert correlation(inputs, t).details[f"corr_{tickers[rest[0]]}"] == pytest.approx(
            np.corrcoef(r[:, i], r[:, rest[0]])[0, 1], abs=1e-12
        )


# --- properties -------------------------------------------------------------------------------

portfolios = st.tuples(
    st.integers(1, 8),  # number of holdings
    st.integers(0, 2**32 - 1),  # seed of the synthetic market
    st.lists(st.integers(1, 10_000), min_size=8, max_size=8),  # shares
)


def make_portfolio(
    case: tuple[int, int, list[int]],
) -> tuple[dict[str, float], dict[str, float], dict[str, History]]:
    n, seed, shares = case
    tickers = [f"T{k}" for k in range(n)]
    h = random_histories(tickers, 260, seed)
    prices = {t: h[t][-1][1] for t in tickers}
    return {t: float(shares[k]) for k, t in enumerate(tickers)}, prices, h


def assert_same_results(a: PortfolioInputs, b: PortfolioInputs) -> None:
    ra, rb = all_results(a), all_results(b)
    for key, x in ra.items():
        y = rb[key]
        assert (x.value is None) == (y.value is None), key
        if x.value is not None:
            assert x.value == pytest.approx(y.value, rel=1e-9, abs=1e-12), key
        assert x.reason == y.reason
        assert x.details.keys() == y.details.keys()
        for k, v in x.details.items():
            if isinstance(v, float) and not isinstance(v, bool):
                assert v == pytest.approx(y.details[k], rel=1e-9, abs=1e-12), (key, k)
            else:
                assert v == y.details[k], (key, k)


@settings(max_examples=40, deadline=None)
@given(portfolios, st.floats(1e-3, 1e3))
def test_scaling_holdings_changes_nothing(case: tuple[int, int, list[int]], k: float) -> None:
    holdings, prices, h = make_portfolio(case)
    scaled = {t: q * k for t, q in holdings.items()}
    assert_same_results(build_inputs(holdings, prices, h), build_inputs(scaled, prices, h))


@settings(max_examples=40, deadline=None)
@given(portfolios, st.floats(1e-3, 1e3))
def test_scaling_prices_and_histories_changes_nothing(
    case: tuple[int, int, list[int]], k: float
) -> None:
    holdings, prices, h = make_portfolio(case)
    prices_k = {t: p * k for t, p in prices.items()}
    h_k = {t: [(d, p * k) for d, p in rows] for t, rows in h.items()}
    assert_same_results(build_inputs(holdings, prices, h), build_inputs(holdings, prices_k, h_k))


@settings(max_examples=60, deadline=None)
@given(portfolios)
def test_results_are_bounded_consistent_and_json_safe(case: tuple[int, int, list[int]]) -> None:
    inputs = build_inputs(*make_portfolio(case))
    results = all_results(inputs)
    pcr = [results[(t, "portfolio_risk")].value for t in inputs.tickers]
    assert math.fsum(v for v in pcr if v is not None) == pytest.approx(1.0, abs=1e-9)
    for t in inputs.tickers:
        score = results[(t, "allocation_score")].value
        assert score is not None
        assert -1.0 <= score <= 1.0
        corr = results[(t, "correlation")].value
        assert corr is None or -1.0 <= corr <= 1.0
    for r in results.values():
        json.dumps(
            {"value": r.value, "reason": r.reason, "details": dict(r.details)}, allow_nan=False
        )


def test_build_inputs_is_deterministic() -> None:
    holdings, prices, h = make_portfolio((6, 99, [3, 1, 4, 1, 5, 9, 2, 6]))
    a, b = build_inputs(holdings, prices, h), build_inputs(holdings, prices, h)
    assert a.cov is not None
    assert b.cov is not None
    assert a.cov.tobytes() == b.cov.tobytes()
    assert all_results(a) == all_results(b)
