"""Batch references of the indicator kinds, written here in numpy (issue 19's contract):
Wilder's RSI, the SMA, the EMA seeded with the SMA of its first n values as TA-Lib does, rolling
max/min; and the replay's real closes to check them on (tests/unit/test_indicators.py,
tests/integration/test_indicator_feed.py)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from marketpulse.alerts.indicators import WEEKS_52
from marketpulse.alerts.rules import Indicator
from marketpulse.market.providers.replay import load_stock_series
from marketpulse.market.quotes import FloatArray

TOL = 1e-9


def Spec(  # named as the model it builds, positionally
    kind: str,
    period: int | None = None,
    *,
    fast: int | None = None,
    slow: int | None = None,
    average: str | None = None,
) -> Indicator:
    """The rule model's ``Indicator`` (validated, defaults applied), built positionally."""
    given = {"kind": kind, "period": period, "fast": fast, "slow": slow, "average": average}
    return Indicator.model_validate({k: v for k, v in given.items() if v is not None})


# -- the batch references: one value per bar (NaN during warm-up) ----------------------------


def nan_like(x: FloatArray) -> FloatArray:
    return np.full(len(x), np.nan)


def ref_sma(x: FloatArray, n: int) -> FloatArray:
    out = nan_like(x)
    if len(x) >= n:
        out[n - 1 :] = sliding_window_view(x, n).mean(axis=1)
    return out


def ref_ema(x: FloatArray, n: int) -> FloatArray:
    """TA-Lib's EMA (its default): seeded at bar n - 1 with the SMA of the first n values."""
    out = nan_like(x)
    if len(x) < n:
        return out
    k = 2.0 / (n + 1)
    e = float(np.mean(x[:n]))
    out[n - 1] = e
    for i in range(n, len(x)):
        e = k * x[i] + (1 - k) * e
        out[i] = e
    return out


def ref_rsi(x: FloatArray, n: int) -> FloatArray:
    """Wilder's RSI as TA-Lib: the first averages are the means of the first n gains and
    losses (at bar n), then avg = (avg * (n - 1) + x) / n; a window without losses is 100."""
    out = nan_like(x)
    if len(x) < n + 1:
        return out
    d = np.diff(x)
    gain, loss = np.where(d > 0, d, 0.0), np.where(d < 0, -d, 0.0)
    g, l_ = float(np.mean(gain[:n])), float(np.mean(loss[:n]))
    for i in range(n, len(x)):
        if i > n:
            g = (g * (n - 1) + gain[i - 1]) / n
            l_ = (l_ * (n - 1) + loss[i - 1]) / n
        out[i] = 100.0 if l_ == 0 else 100.0 * g / (g + l_)
    return out


def ref_window(x: FloatArray, n: int, fn: Callable[..., FloatArray]) -> FloatArray:
    out = nan_like(x)
    if len(x) >= n:
        out[n - 1 :] = fn(sliding_window_view(x, n), axis=1)
    return out


def reference(spec: Indicator, x: FloatArray) -> FloatArray:
    """The contract's formula for ``spec`` at every bar of ``x``, by batch computation."""
    n = spec.period or 14
    avg = ref_sma if spec.average == "sma" else ref_ema
    match spec.kind:
        case "rsi":
            return ref_rsi(x, n)
        case "sma":
            return ref_sma(x, n)
        case "ema":
            return ref_ema(x, n)
        case "price_vs_sma":
            return 100 * (x / ref_sma(x, n) - 1)
        case "price_vs_ema":
            return 100 * (x / ref_ema(x, n) - 1)
        case "ma_cross":
            assert spec.fast is not None and spec.slow is not None
            return 100 * (avg(x, spec.fast) / avg(x, spec.slow) - 1)
        case "change_sessions":
            out = nan_like(x)
            out[n:] = 100 * (x[n:] / x[:-n] - 1)
            return out
        case "from_52w_high":
            return 100 * (1 - x / ref_window(x, WEEKS_52, np.max))
        case "from_52w_low":
            return 100 * (x / ref_window(x, WEEKS_52, np.min) - 1)
        case "drawdown":
            return 100 * (1 - x / ref_window(x, n, np.max))
    raise AssertionError(spec.kind)


def series(symbol: str, first: str, last: str) -> tuple[list[str], FloatArray]:
    s = load_stock_series()[symbol]
    sel = (s.dates >= np.datetime64(first)) & (s.dates <= np.datetime64(last))
    return [str(d) for d in s.dates[sel]], s.close[sel].astype(np.float64)


def close_enough(got: float | None, want: float) -> bool:
    if math.isnan(want):
        return got is None
    return got is not None and math.isclose(got, want, rel_tol=TOL, abs_tol=TOL)
