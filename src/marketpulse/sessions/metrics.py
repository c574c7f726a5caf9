"""The five portfolio-context metrics of docs/metrics.md, as pure functions of ``PortfolioInputs``.

Each metric answers one question about one holding and returns a ``MetricResult``: ``value`` is
the number streamed in ``analysis_result`` (None = null, with ``reason``), ``details`` holds
optional extras. Guarantees: deterministic; never NaN or ±inf anywhere in a result (a number
that cannot be computed is None with a reason); a ticker outside the portfolio raises
``NotInPortfolio``; the same Σ feeds every metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from marketpulse.errors import NotInPortfolio
from marketpulse.market.quotes import FloatArray
from marketpulse.sessions.portfolio_inputs import (
    REASON_INSUFFICIENT_HISTORY,
    PortfolioInputs,
    build_inputs,
)
from marketpulse.sessions.risk_parity import (
    RiskParityError,
    rest_correlation,
    risk_contributions,
    risk_parity_weights,
    risk_parity_weights_memo,
)

__all__ = [
    "METRIC_NAMES",
    "MetricResult",
    "PortfolioInputs",
    "allocation_action",
    "allocation_score",
    "build_inputs",
    "compute_metric",
    "concentration",
    "correlation",
    "momentum",
    "overweight_threshold",
    "portfolio_risk",
    "risk_parity_weights",
]

METRIC_NAMES: tuple[str, ...] = (
    "portfolio_risk",
    "concentration",
    "correlation",
    "momentum",
    "allocation_score",
)

REASON_NO_OTHER_HOLDINGS = "no_other_holdings"
REASON_ZERO_VARIANCE = "zero_variance"
REASON_ZERO_PORTFOLIO_VARIANCE = "zero_portfolio_variance"
REASON_RISK_PARITY_FAILED = "risk_parity_failed"

DetailValue = float | str | bool | None


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric's answer: ``value`` (None = null, then ``reason`` says why) and extras."""

    value: float | None
    reason: str | None = None
    details: Mapping[str, DetailValue] = field(default_factory=dict)


def _num(x: float) -> float | None:
    """JSON-safe number: None instead of NaN/±inf."""
    v = float(x)
    return v if math.isfinite(v) else None


def _position(inputs: PortfolioInputs, ticker: str) -> int:
    try:
        return inputs.index(ticker)
    except ValueError:
        raise NotInPortfolio(f"{ticker} is not one of the portfolio's holdings") from None


def _no_cov(inputs: PortfolioInputs, details: Mapping[str, DetailValue]) -> MetricResult:
    return MetricResult(None, inputs.cov_reason or REASON_INSUFFICIENT_HISTORY, details)


def portfolio_risk(inputs: PortfolioInputs, ticker: str) -> MetricResult:
    """PCR_i = w_i (Σw)_i / (wᵀΣw): the holding's share of portfolio volatility.

    Sums to 1 over holdings; negative means a hedge. One holding: 1 (an identity, so even
    without enough history). Null without Σ or when the portfolio has zero variance.
    """
    i = _position(inputs, ticker)
    w = inputs.weights
    details: dict[str, DetailValue] = {"weight": _num(w[i]), "n_returns": float(inputs.n_returns)}
    if len(inputs.tickers) == 1:
        if inputs.cov is not None:
            details["sigma_p"] = _num(math.sqrt(max(float(inputs.cov[0, 0]), 0.0)))
        return MetricResult(1.0, None, details)
    cov = inputs.cov
    if cov is None:
        return _no_cov(inputs, details)
    sw = cov @ w
    var = float(w @ sw)
    if not var > 0.0:
        return MetricResult(None, REASON_ZERO_PORTFOLIO_VARIANCE, details)
    pcr = risk_contributions(cov, w)
    sigma_p = math.sqrt(var)
    details.update(
        sigma_p=_num(sigma_p),
        volatility=_num(math.sqrt(max(float(cov[i, i]), 0.0))),
        marginal_contribution=_num(sw[i] / sigma_p),  # ∂σ_P/∂w_i
        risk_contribution=_num(w[i] * sw[i] / sigma_p),  # in volatility units; sums to σ_P
    )
    value = _num(pcr[i])
    return MetricResult(value, None if value is not None else REASON_ZERO_VARIANCE, details)


def overweight_threshold(n: int) -> float:
    """Weight above which one of N holdings is overweight: 1/N + min(0.05, 0.25/N)."""
    return 1.0 / n + min(0.05, 0.25 / n)


def concentration(inputs: PortfolioInputs, ticker: str) -> MetricResult:
    """w_i, the holding's share of portfolio value; needs no history.

    ``details.overweight`` is w_i > 1/N + min(0.05, 0.25/N); a single holding is always
    overweight (docs/metrics.md edge case, although 1 is below 1 + 0.05). Also HHI = Σw² and the
    effective number of holdings 1/HHI.
    """
    i = _position(inputs, ticker)
    w = inputs.weights
    n = len(inputs.tickers)
    wi = float(w[i])
    threshold = overweight_threshold(n)
    hhi = float(w @ w)
    details: dict[str, DetailValue] = {
        "hhi": _num(hhi),
        "effective_n": _num(1.0 / hhi) if hhi > 0.0 else None,
        "overweight_threshold": _num(threshold),
        "overweight": n == 1 or wi > threshold,
        "n_holdings": float(n),
    }
    return MetricResult(_num(wi), None, details)


def correlation(inputs: PortfolioInputs, ticker: str) -> MetricResult:
    """corr(r_i, r_rest), rest = the other holdings weighted w_j / (1 − w_i).

    Closed form on Σ. Null with ``no_other_holdings`` for a single holding (or when the others
    weigh nothing), without Σ, or when either side has zero variance. Details carry the
    pairwise correlations ``corr_<TICKER>`` with every other holding.
    """
    i = _position(inputs, ticker)
    w = inputs.weights
    n = len(inputs.tickers)
    if n == 1 or not float(w.sum() - w[i]) > 0.0:
        return MetricResult(None, REASON_NO_OTHER_HOLDINGS)
    cov = inputs.cov
    if cov is None:
        return _no_cov(inputs, {})
    details: dict[str, DetailValue] = {}
    var_i = float(cov[i, i])
    for j, other in enumerate(inputs.tickers):
        if j == i:
            continue
        denom = var_i * float(cov[j, j])
        details[f"corr_{other}"] = (
            _num(min(1.0, max(-1.0, float(cov[i, j]) / math.sqrt(denom)))) if denom > 0 else None
        )
    rho = rest_correlation(cov, w, i)
    if rho is None:
        return MetricResult(None, REASON_ZERO_VARIANCE, details)
    return MetricResult(_num(rho), None, details)


def momentum(inputs: PortfolioInputs, ticker: str) -> MetricResult:
    """w_i · M_i with M_i = P_{t−21} / P_{t−252} − 1 on adjusted closes (12-1 momentum).

    The holding's contribution to the portfolio's 12-1 return. Null with
    ``insufficient_history`` when the holding has fewer than 253 prices. Details: M_i, the
    risk-adjusted M_i / σ_i (when Σ exists), and the portfolio's Σ w_j M_j (when every
    holding has one).
    """
    i = _position(inputs, ticker)
    wi = float(inputs.weights[i])
    m = inputs.momentum_12_1.get(ticker)
    details: dict[str, DetailValue] = {"weight": _num(wi)}
    if m is None:
        return MetricResult(None, REASON_INSUFFICIENT_HISTORY, details)
    details["momentum_12_1"] = _num(m)
    cov = inputs.cov
    if cov is not None and float(cov[i, i]) > 0.0:
        details["risk_adjusted_momentum"] = _num(m / math.sqrt(float(cov[i, i])))
    ms = [inputs.momentum_12_1.get(t) for t in inputs.tickers]
    details["portfolio_momentum"] = (
        _num(sum(float(w) * mj for w, mj in zip(inputs.weights, ms, strict=True) if mj is not None))
        if all(mj is not None for mj in ms)
        else None
    )
    return MetricResult(_num(wi * m), None, details)


def allocation_action(target: float, weight: float) -> str:
    """``increase`` / ``decrease`` when w*_i − w_i leaves ±min(0.05, 0.25·w*_i), else ``hold``."""
    band = min(0.05, 0.25 * target)
    diff = target - weight
    if diff > band:
        return "increase"
    if diff < -band:
        return "decrease"
    return "hold"


def allocation_score(inputs: PortfolioInputs, ticker: str) -> MetricResult:
    """(w*_i − w_i) / max(w*_i, w_i) with w* the risk-parity weights of the same holdings.

    In [−1, 1]: > 0 the holding is under its equal-risk share (increase), < 0 over it. One
    holding: 0 (``hold``). Null without Σ or when Σ admits no risk-parity solution.
    """
    i = _position(inputs, ticker)
    w = inputs.weights
    wi = float(w[i])
    if len(inputs.tickers) == 1:
        details1: dict[str, DetailValue] = {"target_weight": 1.0, "weight": _num(wi)}
        details1.update(band=0.05, action="hold")
        return MetricResult(0.0, None, details1)
    cov = inputs.cov
    if cov is None:
        return _no_cov(inputs, {"weight": _num(wi)})
    try:
        target_weights: FloatArray = risk_parity_weights_memo(cov)
    except RiskParityError:
        return MetricResult(None, REASON_RISK_PARITY_FAILED, {"weight": _num(wi)})
    target = float(target_weights[i])
    score = (target - wi) / max(target, wi)
    details: dict[str, DetailValue] = {
        "target_weight": _num(target),
        "weight": _num(wi),
        "band": _num(min(0.05, 0.25 * target)),
        "action": allocation_action(target, wi),
    }
    return MetricResult(_num(min(1.0, max(-1.0, score))), None, details)


_METRICS: Mapping[str, Callable[[PortfolioInputs, str], MetricResult]] = {
    "portfolio_risk": portfolio_risk,
    "concentration": concentration,
    "correlation": correlation,
    "momentum": momentum,
    "allocation_score": allocation_score,
}


def compute_metric(name: str, inputs: PortfolioInputs, ticker: str) -> MetricResult:
    """The metric ``name`` (one of METRIC_NAMES) for ``ticker``.

    Raises ValueError for an unknown name and NotInPortfolio for a ticker not held.
    """
    fn = _METRICS.get(name)
    if fn is None:
        raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRIC_NAMES)}")
    return fn(inputs, ticker)
