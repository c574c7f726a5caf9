"""Everything the five metrics need, computed once per analysis run (pure numpy, no I/O).

From holdings (shares), current unadjusted prices and adjusted-close histories we derive, per
docs/metrics.md: market-value weights w = V / ΣV; simple returns on the dates common to all holdings
(inner join, no filling), the last 252 of them; the annualised sample covariance Σ (ddof = 1,
× 252) when at least 60 common returns exist; and each holding's 12-1 momentum on its own
history (needs 253 prices).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from marketpulse.errors import InsufficientHistory, ValidationFailed
from marketpulse.market.quotes import FloatArray

TRADING_DAYS = 252
"""Returns per year: the annualisation factor and the length of the return window."""
MIN_COMMON_RETURNS = 60
"""Fewer common returns than this and Σ is not estimated (metrics that need it are null)."""
MOMENTUM_PRICES = 253
"""Prices needed for 12-1 momentum: P_{t−21} / P_{t−252} − 1."""
MOMENTUM_SKIP = 21
"""The most recent month skipped by 12-1 momentum."""

REASON_INSUFFICIENT_HISTORY = "insufficient_history"

StrArray = npt.NDArray[np.str_]


def _frozen(a: FloatArray) -> FloatArray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class PortfolioInputs:
    """The portfolio as the metrics see it; immutable, so one instance serves every metric.

    ``weights`` follows ``tickers``. ``cov`` is the annualised Σ over ``n_returns`` common
    returns, or None with ``cov_reason`` when fewer than 60 exist. ``momentum_12_1`` maps each
    ticker to M_i (None without 253 prices). ``as_of`` is the last common date.
    """

    tickers: tuple[str, ...]
    weights: FloatArray
    cov: FloatArray | None
    n_returns: int
    momentum_12_1: Mapping[str, float | None]
    total_value: float = 0.0
    as_of: str | None = None
    cov_reason: str | None = None
    asynchronous: bool = False

    def index(self, ticker: str) -> int:
        """Position of ``ticker`` in ``tickers``; ValueError if absent."""
        return self.tickers.index(ticker)


def _finite_nonneg(name: str, x: float, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"{what} for {name} is not a number: {x!r}") from exc
    if not math.isfinite(v) or v < 0.0:
        raise ValidationFailed(f"{what} for {name} must be a finite non-negative number, got {x!r}")
    return v


def market_weights(
    holdings: Mapping[str, float], prices: Mapping[str, float]
) -> tuple[tuple[str, ...], FloatArray, float]:
    """(tickers, w = V / ΣV, ΣV) with V = shares × current price, tickers in holdings order.

    Raises ValidationFailed for no holdings, a missing/zero/negative/non-finite price, a
    negative or non-finite share count, or a total value that is zero or not finite.
    """
    tickers = tuple(holdings)
    if not tickers:
        raise ValidationFailed("the portfolio has no holdings")
    shares = np.array([_finite_nonneg(t, holdings[t], "quantity") for t in tickers])
    px = np.empty(len(tickers), dtype=np.float64)
    for k, t in enumerate(tickers):
        if t not in prices:
            raise ValidationFailed(f"no current price for {t}")
        px[k] = _finite_nonneg(t, prices[t], "price")
        if px[k] == 0.0:
            raise ValidationFailed(f"price for {t} must be positive, got {prices[t]!r}")
    values = shares * px
    total = float(values.sum())
    if not math.isfinite(total) or not total > 0.0:
        raise ValidationFailed(f"total portfolio value must be positive and finite, got {total}")
    return tickers, _frozen(values / total), total


def _series(ticker: str, history: Sequence[tuple[str, float]]) -> tuple[StrArray, FloatArray]:
    """Dates (str array) and adjusted closes of one history, validated."""
    if not history:
        raise InsufficientHistory(f"no price history for {ticker}")
    dates_raw, closes_raw = zip(*history, strict=True)
    dates = np.array(dates_raw, dtype=str)
    try:
        closes = np.array(closes_raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"history of {ticker} has a non-numeric close") from exc
    if not np.all(np.isfinite(closes)) or not np.all(closes > 0.0):
        raise ValidationFailed(f"history of {ticker} has a non-positive or non-finite close")
    # ISO dates sort as strings, so "strictly increasing" is a string comparison.
    if dates.size > 1 and not np.all(dates[1:] > dates[:-1]):
        raise ValidationFailed(f"history of {ticker} is not strictly increasing in date")
    return dates, closes


def _momentum(closes: FloatArray) -> float | None:
    if closes.size < MOMENTUM_PRICES:
        return None
    m = float(closes[-1 - MOMENTUM_SKIP] / closes[-MOMENTUM_PRICES] - 1.0)
    return m if math.isfinite(m) else None


def _intersect(a: StrArray, b: StrArray) -> StrArray:
    # Holdings usually share a calendar: equal arrays skip intersect1d's sort.
    if a.shape == b.shape and np.array_equal(a, b):
        return a
    out: StrArray = np.intersect1d(a, b, assume_unique=True)
    return out


def common_returns(
    series: Sequence[tuple[StrArray, FloatArray]], window: int = TRADING_DAYS
) -> tuple[StrArray, FloatArray]:
    """(dates, R): the last ``window`` simple returns on the dates common to every series.

    R has one row per return (dated by its later day) and one column per series; prices are
    joined on the common dates first (inner join, no filling), then r_t = p_t / p_{t−1} − 1.
    """
    common = reduce(_intersect, (d for d, _ in series))[-(window + 1) :]
    n = len(series)
    p = np.empty((common.size, n), dtype=np.float64)
    for k, (dates, closes) in enumerate(series):
        p[:, k] = closes[np.searchsorted(dates, common)]
    r: FloatArray = p[1:] / p[:-1] - 1.0
    return common[1:], r


def annualised_cov(returns: FloatArray) -> FloatArray:
    """Sample covariance (ddof = 1) of the columns of ``returns`` × 252, exactly symmetric."""
    t = returns.shape[0]
    centred = returns - returns.mean(axis=0)
    cov = (centred.T @ centred) / (t - 1) * TRADING_DAYS
    out: FloatArray = (cov + cov.T) / 2.0
    return out


# Where a listing trades, by its exchange suffix (no suffix: a US listing). Listings in
# different regions close at different hours, so their daily closes are asynchronous.
_REGIONS = {
    "NS": "india", "BO": "india",
    "L": "europe", "DE": "europe", "F": "europe", "PA": "europe", "AS": "europe",
    "MI": "europe", "MC": "europe", "SW": "europe", "ST": "europe", "CO": "europe",
    "OL": "europe", "BR": "europe", "LS": "europe", "VI": "europe", "HE": "europe",
    "IR": "europe", "JO": "africa", "TA": "middle_east",
    "T": "east_asia", "HK": "east_asia", "SS": "east_asia", "SZ": "east_asia",
    "KS": "east_asia", "KQ": "east_asia", "TW": "east_asia", "SI": "southeast_asia",
    "AX": "oceania", "NZ": "oceania",
}  # fmt: skip


def trading_region(ticker: str) -> str:
    """The region whose trading day the listing's daily close ends (``americas`` without a
    known suffix: US and the Americas close together)."""
    _, dot, suffix = ticker.rpartition(".")
    return _REGIONS.get(suffix, "americas") if dot else "americas"


def asynchronous_markets(tickers: Sequence[str]) -> bool:
    """Whether the holdings' daily closes are taken at different hours (NSE and NYSE never
    overlap): their daily correlations are then biased towards zero (Burns, Engle & Mezrich,
    "Correlations and Volatilities of Asynchronous Data", 1998)."""
    return len({trading_region(t) for t in tickers}) > 1


def in_base_currency(
    history: Sequence[tuple[str, float]], rates: Sequence[tuple[str, float]]
) -> list[tuple[str, float]]:
    """A (date, price) history converted with a (date, rate into the base) history, on the
    dates both have (inner join, no filling): p_t × fx_t. Its simple returns are then
    (1 + r_local)(1 + r_fx) − 1, the base-currency returns."""
    fx = dict(rates)
    return [(d, p * fx[d]) for d, p in history if d in fx]


@dataclass(frozen=True)
class MarketStats:
    """The part of the inputs that depends only on which tickers are held and the as-of date
    (not on quantities or current prices): Σ, the return count and momentum. Sessions holding
    the same tickers at the same market tick share one."""

    tickers: tuple[str, ...]
    cov: FloatArray | None
    n_returns: int
    momentum_12_1: Mapping[str, float | None]
    as_of: str | None
    cov_reason: str | None
    asynchronous: bool = False


def market_stats(
    tickers: Sequence[str], histories: Mapping[str, Sequence[tuple[str, float]]]
) -> MarketStats:
    """Σ, return count and momentum of ``tickers`` from their adjusted-close histories."""
    series = [_series(t, histories.get(t, ())) for t in tickers]
    momentum = {t: _momentum(closes) for t, (_, closes) in zip(tickers, series, strict=True)}
    dates, returns = common_returns(series)
    n_returns = int(returns.shape[0])
    cov: FloatArray | None = None
    reason: str | None = REASON_INSUFFICIENT_HISTORY
    if n_returns >= MIN_COMMON_RETURNS:
        c = annualised_cov(returns)
        if np.all(np.isfinite(c)):
            cov, reason = _frozen(c), None
        else:
            reason = "non_finite_covariance"
    return MarketStats(
        tickers=tuple(tickers),
        cov=cov,
        n_returns=n_returns,
        momentum_12_1=MappingProxyType(momentum),
        as_of=str(dates[-1]) if dates.size else None,
        cov_reason=reason,
        asynchronous=asynchronous_markets(tickers),
    )


def inputs_from(
    holdings: Mapping[str, float], prices: Mapping[str, float], stats: MarketStats
) -> PortfolioInputs:
    """The metrics' inputs from holdings, prices and the shared market statistics of the same
    tickers (in the same order; ValueError otherwise)."""
    tickers, weights, total = market_weights(holdings, prices)
    if tickers != stats.tickers:
        raise ValueError(f"market statistics are for {stats.tickers}, holdings are {tickers}")
    return PortfolioInputs(
        tickers=tickers,
        weights=weights,
        cov=stats.cov,
        n_returns=stats.n_returns,
        momentum_12_1=stats.momentum_12_1,
        total_value=total,
        as_of=stats.as_of,
        cov_reason=stats.cov_reason,
        asynchronous=stats.asynchronous,
    )


def build_inputs(
    holdings: Mapping[str, float],
    prices: Mapping[str, float],
    histories: Mapping[str, Sequence[tuple[str, float]]],
) -> PortfolioInputs:
    """The metrics' inputs for one portfolio at one as-of date (the end of ``histories``).

    ``holdings``: ticker → shares; ``prices``: ticker → current unadjusted price;
    ``histories``: ticker → [(YYYY-MM-DD, adjusted close), …] oldest first. Extra tickers in
    ``prices``/``histories`` are ignored. Raises InsufficientHistory for a holding with no
    history at all and ValidationFailed for bad numbers or dates. Fewer than 60 common returns
    is not an error: ``cov`` is None and ``cov_reason`` says why.
    """
    tickers, _, _ = market_weights(holdings, prices)
    return inputs_from(holdings, prices, market_stats(tickers, histories))
