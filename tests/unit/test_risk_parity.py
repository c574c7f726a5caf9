"""Risk contributions, rest correlation and the risk-parity solver on a given Σ."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from marketpulse.sessions.risk_parity import (
    RiskParityError,
    portfolio_variance,
    rest_correlation,
    risk_contributions,
    risk_parity_weights,
)

# docs/metrics.md hand-checkable case: σ = 20 % / 10 %, ρ = 0.5, w = 0.6 / 0.4.
HAND_COV = np.array([[0.04, 0.01], [0.01, 0.01]])
HAND_W = np.array([0.6, 0.4])


def test_hand_case_portfolio_volatility() -> None:
    assert math.sqrt(portfolio_variance(HAND_COV, HAND_W)) == pytest.approx(0.144222, abs=5e-7)


def test_hand_case_risk_contributions() -> None:
    pcr = risk_contributions(HAND_COV, HAND_W)
    assert pcr == pytest.approx([0.8077, 0.1923], abs=5e-5)
    assert pcr == pytest.approx([0.0168 / 0.0208, 0.004 / 0.0208], rel=1e-12)


def test_hand_case_risk_parity_weights() -> None:
    assert risk_parity_weights(HAND_COV) == pytest.approx([1 / 3, 2 / 3], abs=1e-12)


def test_hand_case_rest_correlation_is_rho() -> None:
    assert rest_correlation(HAND_COV, HAND_W, 0) == pytest.approx(0.5, abs=1e-15)
    assert rest_correlation(HAND_COV, HAND_W, 1) == pytest.approx(0.5, abs=1e-15)


def test_single_asset() -> None:
    cov = np.array([[0.09]])
    assert risk_parity_weights(cov).tolist() == [1.0]
    assert risk_contributions(cov, np.array([1.0])).tolist() == [1.0]
    assert rest_correlation(cov, np.array([1.0]), 0) is None


def test_solver_is_deterministic() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(12, 30))
    cov = a @ a.T / 30 * 0.05
    first = risk_parity_weights(cov)
    assert first.tobytes() == risk_parity_weights(cov.copy()).tobytes()


@pytest.mark.parametrize(
    "cov",
    [
        np.array([[0.04, 0.0], [0.0, 0.0]]),  # zero variance
        np.array([[0.04, 0.01], [0.02, 0.01]]),  # not symmetric
        np.array([[0.04, np.nan], [np.nan, 0.01]]),
        np.zeros((2, 3)),
        np.zeros((0, 0)),
    ],
)
def test_bad_covariance_is_refused(cov: np.ndarray) -> None:
    with pytest.raises(RiskParityError):
        risk_parity_weights(cov)


def test_no_convergence_is_an_error_not_a_guess() -> None:
    cov = np.array([[0.04, 0.018, 0.0], [0.018, 0.09, -0.01], [0.0, -0.01, 0.01]])
    with pytest.raises(RiskParityError, match="did not converge"):
        risk_parity_weights(cov, max_iter=1)


def test_zero_portfolio_variance_has_no_contributions() -> None:
    with pytest.raises(ValueError, match="variance"):
        risk_contributions(np.zeros((2, 2)), np.array([0.5, 0.5]))


def test_rest_correlation_without_rest_weight() -> None:
    assert rest_correlation(HAND_COV, np.array([1.0, 0.0]), 0) is None


# Σ = AAᵀ/k + δI: symmetric positive definite, with loadings in [−1, 1] so correlations of
# either sign appear, and a floor δ that keeps the solver's tolerance within float64 reach.
@st.composite
def covariances(draw: st.DrawFn, min_n: int = 2, max_n: int = 12) -> np.ndarray:
    n = draw(st.integers(min_n, max_n))
    k = draw(st.integers(1, n + 3))
    a = draw(hnp.arrays(np.float64, (n, k), elements=st.floats(-1, 1, width=64)))
    vols = draw(hnp.arrays(np.float64, n, elements=st.floats(0.05, 1.0)))
    base = a @ a.T / k + 0.02 * np.eye(n)
    cov: np.ndarray = base * np.outer(vols, vols)
    sym: np.ndarray = (cov + cov.T) / 2
    return sym


@st.composite
def cov_and_weights(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    cov = draw(covariances())
    raw = draw(hnp.arrays(np.float64, cov.shape[0], elements=st.floats(0.01, 1.0)))
    return cov, raw / raw.sum()


@settings(max_examples=200, deadline=None)
@given(cov_and_weights())
def test_risk_contributions_sum_to_one(case: tuple[np.ndarray, np.ndarray]) -> None:
    cov, w = case
    assert float(risk_contributions(cov, w).sum()) == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(covariances())
def test_risk_parity_equalises_contributions(cov: np.ndarray) -> None:
    w = risk_parity_weights(cov)
    n = cov.shape[0]
    assert np.all(w > 0)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert np.max(np.abs(risk_contributions(cov, w) - 1.0 / n)) <= 1e-9


@settings(max_examples=100, deadline=None)
@given(covariances(), st.floats(1e-4, 1e4))
def test_risk_parity_is_scale_invariant(cov: np.ndarray, k: float) -> None:
    assert risk_parity_weights(cov * k) == pytest.approx(risk_parity_weights(cov), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.01, 2.0), st.floats(0.01, 2.0), st.floats(-0.99, 0.99))
def test_two_assets_is_inverse_volatility(s1: float, s2: float, rho: float) -> None:
    cov = np.array([[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]])
    inv = np.array([1 / s1, 1 / s2])
    assert risk_parity_weights(cov) == pytest.approx(inv / inv.sum(), abs=1e-10)


# Few factors with loadings of both signs and a small idiosyncratic floor: strongly hedged,
# badly conditioned Σ (condition numbers ~10⁴), where plain coordinate descent crawls.
@st.composite
def hedged_covariances(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(5, 20))
    seed = draw(st.integers(0, 2**32 - 1))
    a = np.random.default_rng(seed).normal(size=(n, 3))
    floor = draw(st.floats(1e-3, 1e-1))
    cov: np.ndarray = a @ a.T + floor * np.eye(n)
    return cov


@settings(max_examples=50, deadline=None)
@given(hedged_covariances())
def test_risk_parity_converges_on_ill_conditioned_hedged_cov(cov: np.ndarray) -> None:
    w = risk_parity_weights(cov)
    assert np.all(w > 0)
    assert np.max(np.abs(risk_contributions(cov, w) - 1.0 / cov.shape[0])) <= 1e-9


def test_perfectly_correlated_assets_get_equal_weights() -> None:
    assert risk_parity_weights(np.full((3, 3), 0.04)) == pytest.approx([1 / 3] * 3, abs=1e-12)


def test_perfect_hedge_has_no_risk_parity_solution() -> None:
    with pytest.raises(RiskParityError):
        risk_parity_weights(np.array([[0.04, -0.04], [-0.04, 0.04]]))
