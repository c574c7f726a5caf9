"""Risk decomposition on a covariance matrix: Euler risk contributions and risk parity.

Pure numpy on a given annualised Σ (see docs/metrics.md). Nothing here knows about tickers or
histories; ``portfolio_inputs`` builds Σ, ``metrics`` reads these numbers.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from marketpulse.market.quotes import FloatArray


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
    # |Σ − Σᵀ| <= atol elementwise (allclose with rtol=0, without its generality's cost)
    if float(np.max(np.abs(sigma - sigma.T))) > 1e-12 * max(scale, 1e-300):
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


CD_SWEEPS = 100
"""Coordinate-descent sweeps before the Newton polish takes over (see risk_parity_weights)."""
NEWTON_STEPS = 500
"""Newton steps allowed after that; far more than a Σ with a solution needs (quadratic)."""


def _erc_error(sigma: FloatArray, y: FloatArray, b: float) -> float:
    """max_i |PCR_i(y) − 1/N|; inf while some contribution total is not positive."""
    rc = y * (sigma @ y)
    total = float(rc.sum())
    return float(np.max(np.abs(rc / total - b))) if total > 0.0 else math.inf


def _cd_sweep(sigma: FloatArray, diag: FloatArray, y: FloatArray, b: float) -> None:
    """One cyclical pass of exact coordinate minimisation, in place on y."""
    s = sigma @ y
    for i in range(y.size):
        d_i = float(diag[i])
        y_i = float(y[i])
        c = float(s[i]) - d_i * y_i
        root = math.sqrt(c * c + 4.0 * d_i * b)
        # Same root as (−c + √(c² + 4Σ_ii b)) / (2Σ_ii); the rationalised form avoids
        # cancellation when c > 0 (a positively correlated rest).
        new = 2.0 * b / (c + root) if c > 0.0 else (root - c) / (2.0 * d_i)
        s += sigma[i] * (new - y_i)  # Σ is symmetric: row i is column i
        y[i] = new


def _newton_step(sigma: FloatArray, y: FloatArray, b: float) -> FloatArray:
    """One damped Newton step on F = (½yᵀΣy)/b − Σ ln y (self-concordant, same minimiser).

    The 1/(1+λ) damping keeps y > 0 and converges from anywhere; near the optimum (λ < 1/4)
    full steps converge quadratically.
    """
    grad = (sigma @ y) / b - 1.0 / y
    hess = sigma / b + np.diag(1.0 / (y * y))
    step = np.linalg.solve(hess, -grad)
    lam = math.sqrt(max(float(-(grad @ step)), 0.0))
    out: FloatArray = y + (step if lam < 0.25 else step / (1.0 + lam))
    return out


def risk_parity_weights(cov: FloatArray, tol: float = 1e-12, max_iter: int = 10_000) -> FloatArray:
    """Equal-risk-contribution weights w* (positive, summing to 1) for Σ.

    Cyclical coordinate descent on ½yᵀΣy − Σ b_i ln y_i with b_i = 1/N (Griveau-Billion,
    Richard & Roncalli 2013): y_i ← (−c_i + √(c_i² + 4Σ_ii b_i)) / (2Σ_ii) with
    c_i = Σ_{j≠i} Σ_ij y_j; then w* = y / Σy. It stops once every percent risk contribution is
    within ``tol`` of 1/N. Coordinate descent crawls on ill-conditioned Σ with strong hedges
    (thousands of sweeps), so after ``CD_SWEEPS`` sweeps damped Newton steps on the same
    strictly convex objective finish the job: the minimiser is unique, so the answer is the
    same. Deterministic: same Σ, same bits. Raises RiskParityError for a Σ that is not
    square/finite/symmetric, has a non-positive diagonal, or does not converge within
    ``max_iter`` iterations (or ``NEWTON_STEPS`` Newton steps). For two assets the answer is
    inverse volatility.
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
    for k in range(min(max_iter, CD_SWEEPS + NEWTON_STEPS)):
        if k < CD_SWEEPS:
            _cd_sweep(sigma, diag, y, b)
        else:
            try:
                y = _newton_step(sigma, y, b)
            except np.linalg.LinAlgError as exc:
                raise RiskParityError("risk parity: singular Newton system") from exc
            if not (np.all(np.isfinite(y)) and np.all(y > 0.0)):
                break
        if _erc_error(sigma, y, b) <= tol:
            out: FloatArray = y / y.sum()
            return out
    raise RiskParityError(f"risk parity did not converge to {tol} in {max_iter} iterations")


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
    var_rest = float(v @ (sigma[mask][:, mask] @ v))
    var_i = float(sigma[i, i])
    if not (var_i > 0.0 and var_rest > 0.0):
        return None
    rho = cov_i_rest / math.sqrt(var_i * var_rest)
    return min(1.0, max(-1.0, rho))


@functools.lru_cache(maxsize=1024)
def _risk_parity_memo(shape: tuple[int, ...], raw: bytes) -> FloatArray:
    w = risk_parity_weights(np.frombuffer(raw, dtype=np.float64).reshape(shape))
    w.flags.writeable = False
    return w


def risk_parity_weights_memo(cov: FloatArray) -> FloatArray:
    """``risk_parity_weights`` memoised on the bytes of Σ (pure: same Σ, same answer), so the
    many sessions that share one Σ at a market tick solve it once."""
    c = np.ascontiguousarray(cov, dtype=np.float64)
    return _risk_parity_memo(c.shape, c.tobytes())
