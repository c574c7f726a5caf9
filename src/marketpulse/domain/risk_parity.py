"""Risk decomposition on a covariance matrix: Euler risk contributions and risk parity.

Pure numpy on a given annualised Σ (see METRICS.md). Nothing here knows about tickers or
histories; ``portfolio_inputs`` builds Σ, ``metrics`` reads these numbers.
"""

from __future__ import annotations

import math

import numpy as np

from marketpulse.domain.market import FloatArray


class RiskParityError(ValueError):
    """Σ admits no risk-parity solution we can compute (bad Σ or no convergence)."""


def validate_cov(cov: FloatArray) -> FloatArray:
    """Σ as a float64 square, finite, symmetric matrix; raises ValueError otherwise."""
    sigma = np.asarray(cov, dtype=np.float64)
    if sigma.ndim != 2 or sigma.shape[0] != sigma.shape[1] or sigma.shape[0] == 0:
        raise ValueError(f"covariance must be a non-empty square matrix, got shape {sigma.shape}")
    if not np.all(np.isfinite(sigma)):
        raise ValueError("covariance has non-finite entries")
    scale = float(np.max(np.abs(sigma)))
    if not np.allclose(sigma, sigma.T, rtol=0.0, atol=1e-12 * max(scale, 1e-300)):
        raise ValueError("covariance is not symmetric")
    return sigma


def portfolio_variance(cov: FloatArray, weights: FloatArray) -> float:
    """wᵀΣw."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w @ (np.asarray(cov, dtype=np.float64) @ w))


def risk_contributions(cov: FloatArray, weights: FloatArray) -> FloatArray:
    """Percent risk contributions PCR_i = w_i (Σw)_i / (wᵀΣw); they sum to 1.

    Raises ValueError when the portfolio variance is not positive (PCR undefined).
    """
    sigma = validate_cov(cov)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (sigma.shape[0],):
        raise ValueError(f"weights shape {w.shape} does not match covariance {sigma.shape}")
    sw = sigma @ w
    var = float(w @ sw)
    if not var > 0.0 or not math.isfinite(var):
        raise ValueError("portfolio variance is not positive")
    out: FloatArray = (w * sw) / var
    return out


def risk_parity_weights(cov: FloatArray, tol: float = 1e-12, max_iter: int = 10_000) -> FloatArray:
    """Equal-risk-contribution weights w* (positive, summing to 1) for Σ.

    Cyclical coordinate descent on ½yᵀΣy − Σ b_i ln y_i with b_i = 1/N (Griveau-Billion,
    Richard & Roncalli 2013): y_i ← (−c_i + √(c_i² + 4Σ_ii b_i)) / (2Σ_ii) with
    c_i = Σ_{j≠i} Σ_ij y_j; then w* = y / Σy. Sweeps stop once every percent risk contribution
    is within ``tol`` of 1/N. Deterministic: same Σ, same bits. Raises RiskParityError for a Σ
    that is not square/finite/symmetric, has a non-positive diagonal, or does not converge
    within ``max_iter`` sweeps. For two assets the answer is inverse volatility.
    """
    try:
        sigma = validate_cov(cov)
    except ValueError as exc:
        raise RiskParityError(str(exc)) from exc
    n = sigma.shape[0]
    diag = np.diag(sigma).copy()
    if not np.all(diag > 0.0):
        raise RiskParityError("covariance has a non-positive variance on its diagonal")
    if n == 1:
        return np.ones(1, dtype=np.float64)
    b = 1.0 / n
    # Start at inverse volatility: exact for two assets, close for most portfolios.
    y = 1.0 / np.sqrt(diag)
    s = sigma @ y
    for _ in range(max_iter):
        for i in range(n):
            d_i = float(diag[i])
            y_i = float(y[i])
            c = float(s[i]) - d_i * y_i
            root = math.sqrt(c * c + 4.0 * d_i * b)
            # Same root as the textbook formula; the rationalised form avoids cancellation
            # when c > 0 (positively correlated rest).
            new = 2.0 * b / (c + root) if c > 0.0 else (root - c) / (2.0 * d_i)
            s += sigma[i] * (new - y_i)  # Σ is symmetric: row i is column i
            y[i] = new
        s = sigma @ y  # refresh so rounding drift from the rank-one updates cannot build up
        rc = y * s
        total = float(rc.sum())
        if total > 0.0 and float(np.max(np.abs(rc / total - b))) <= tol:
            out: FloatArray = y / y.sum()
            return out
    raise RiskParityError(f"risk parity did not converge to {tol} in {max_iter} sweeps")


def rest_correlation(cov: FloatArray, weights: FloatArray, i: int) -> float | None:
    """corr(r_i, r_rest), rest = the other holdings weighted w_j / (1 − w_i).

    Closed form Σ_{i,−i}v / √(Σ_ii · vᵀΣ_{−i,−i}v), clipped to [−1, 1] against rounding.
    None when there is no rest (one holding, or the others weigh nothing) or either side has
    zero variance.
    """
    sigma = validate_cov(cov)
    w = np.asarray(weights, dtype=np.float64)
    n = sigma.shape[0]
    if n < 2:
        return None
    mask = np.ones(n, dtype=bool)
    mask[i] = False
    rest_w = w[mask]
    rest_total = float(rest_w.sum())  # = 1 − w_i, without the rounding of the subtraction
    if not rest_total > 0.0:
        return None
    v = rest_w / rest_total
    cov_i_rest = float(sigma[i, mask] @ v)
    var_rest = float(v @ (sigma[np.ix_(mask, mask)] @ v))
    var_i = float(sigma[i, i])
    if not (var_i > 0.0 and var_rest > 0.0):
        return None
    rho = cov_i_rest / math.sqrt(var_i * var_rest)
    return min(1.0, max(-1.0, rho))
