"""The simulated market: pure, deterministic, correlated, with plausible bars and volume spikes."""

from __future__ import annotations

import itertools
from datetime import date

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketpulse.errors import PermanentSourceError
from marketpulse.market.ports import TickSource
from marketpulse.market.providers import SimulatedSource, make_tick_source
from marketpulse.market.providers.simulated import BLOCK, SymbolProfile
from marketpulse.market.symbols import SYMBOL_RE

tickers = st.from_regex(SYMBOL_RE, fullmatch=True)


def log_returns(source: SimulatedSource, symbol: str, tick: int, n: int) -> np.ndarray:
    closes = np.array([b.adj_close for b in source.history(symbol, tick, n + 1)])
    return np.diff(np.log(closes))


def test_is_a_tick_source() -> None:
    source: TickSource = SimulatedSource(seed=1)
    assert source.name == "simulated"


def test_same_bars_on_any_instance_in_any_call_order() -> None:
    a = SimulatedSource(seed=7)
    late_first = (a.bar("AAPL", 500), a.bar("AAPL", 3))
    b = SimulatedSource(seed=7)
    early_first = (b.bar("AAPL", 3), b.bar("AAPL", 500))
    assert late_first == early_first[::-1]
    # a tick several blocks out, reached in one jump or step by step
    c = SimulatedSource(seed=7)
    for tick in range(0, 3 * BLOCK, 97):
        c.bar("AAPL", tick)
    assert c.bar("AAPL", 3 * BLOCK + 5) == SimulatedSource(seed=7).bar("AAPL", 3 * BLOCK + 5)


def test_bars_do_not_depend_on_history_days() -> None:
    short, long = (
        SimulatedSource(seed=3, history_days=10),
        SimulatedSource(seed=3, history_days=900),
    )
    for tick in (-10, -1, 0, 1, 2000):
        assert short.bar("MSFT", tick) == long.bar("MSFT", tick)


def test_seed_changes_prices_and_symbols_differ() -> None:
    assert SimulatedSource(seed=1).bar("AAPL", 50) != SimulatedSource(seed=2).bar("AAPL", 50)
    source = SimulatedSource(seed=1)
    assert source.bar("AAPL", 50).close != source.bar("MSFT", 50).close


def test_history_is_oldest_first_and_ends_at_the_tick() -> None:
    source = SimulatedSource(seed=5)
    bars = source.history("IBM", 40, 253)
    assert len(bars) == 253
    assert bars[-1] == source.bar("IBM", 40)
    assert bars[0] == source.bar("IBM", 40 - 252)
    dates = [b.date for b in bars]
    assert dates == sorted(dates)
    assert len(set(dates)) == len(dates)


def test_history_is_long_enough_for_the_metrics_at_tick_zero() -> None:
    source = SimulatedSource(seed=5)
    assert len(source.history("IBM", 0, 253)) == 253
    assert len(source.history("IBM", 0, 10_000)) == 301  # ticks -300 .. 0
    assert source.history("IBM", 0, 0) == []


def test_dates_are_business_days_from_the_anchor() -> None:
    source = SimulatedSource(seed=5)
    assert source.bar("X", 0).date == "2026-01-02"
    assert source.bar("X", 1).date == "2026-01-05"  # Friday, then Monday
    days = [date.fromisoformat(b.date) for b in source.history("X", 600, 900)]
    assert all(d.weekday() < 5 for d in days)
    assert all(a < b for a, b in itertools.pairwise(days))


@pytest.mark.parametrize("symbol", ["", "AAPL US", "A" * 21, "ÄPFEL", "AAPL;DROP"])
def test_non_ticker_symbols_are_refused(symbol: str) -> None:
    source = SimulatedSource()
    assert not source.knows(symbol)
    with pytest.raises(PermanentSourceError):
        source.bar(symbol, 0)


def test_ticker_shapes_are_known() -> None:
    source = SimulatedSource()
    for symbol in ("AAPL", "TCS.NS", "M&M.NS", "^GSPC", "BRK-B", "EURUSD=X", "a"):
        assert source.knows(symbol)


def test_ticks_before_the_history_are_refused() -> None:
    source = SimulatedSource(history_days=300)
    source.bar("AAPL", -300)
    with pytest.raises(PermanentSourceError):
        source.bar("AAPL", -301)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(symbol=tickers, tick=st.integers(min_value=-300, max_value=5000))
def test_bar_invariants(symbol: str, tick: int) -> None:
    bar = SimulatedSource(seed=11).bar(symbol, tick)
    assert bar.high >= max(bar.open, bar.close) >= min(bar.open, bar.close) >= bar.low > 0
    assert bar.adj_close == bar.close
    assert bar.volume > 0


@given(symbol=tickers)
def test_profiles_are_plausible(symbol: str) -> None:
    profile = SymbolProfile.of(symbol)
    assert 20 <= profile.start_price <= 500
    assert 0.0099 <= profile.vol <= 0.0301
    assert profile.beta > 0


def test_returns_are_correlated_through_the_market_factor() -> None:
    source = SimulatedSource(seed=42)
    a = log_returns(source, "AAPL", 500, 500)
    b = log_returns(source, "XOM", 500, 500)
    assert float(np.corrcoef(a, b)[0, 1]) > 0.2


def test_realised_volatility_is_plausible() -> None:
    source = SimulatedSource(seed=42)
    for symbol in ("AAPL", "MSFT", "TCS.NS"):
        vol = float(np.std(log_returns(source, symbol, 1000, 1000)))
        assert 0.007 < vol < 0.04, (symbol, vol)


def test_volume_has_occasional_spikes() -> None:
    source = SimulatedSource(seed=42)
    volume = np.array([b.volume for b in source.history("AAPL", 2000, 2000)], dtype=float)
    spikes = int(np.sum(volume >= 3 * np.median(volume)))
    assert 10 <= spikes <= 100  # about 2 % of 2000 days


def test_factory_builds_the_simulated_source() -> None:
    source = make_tick_source("simulated", seed=9, replay_start="2012-03-01", replay_step=1)
    assert source.name == "simulated"
    assert source.bar("AAPL", 4) == SimulatedSource(seed=9).bar("AAPL", 4)
    with pytest.raises(ValueError, match="yahoo"):
        make_tick_source("yahoo", seed=9, replay_start="2012-03-01", replay_step=1)


def test_the_symbol_cache_is_bounded_and_an_evicted_path_is_rebuilt_identically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from marketpulse.market.providers import simulated

    monkeypatch.setattr(simulated, "MAX_PATHS", 2)
    src = SimulatedSource(seed=5)
    first = src.history("AAPL", 3000, 253)  # three blocks grown
    for sym in ("MSFT", "IBM", "TCS.NS"):
        src.bar(sym, 10)
    assert len(src._paths) == 2 and "AAPL" not in src._paths
    assert src.history("AAPL", 3000, 253) == first


def test_paths_keep_their_latest_blocks_and_an_older_tick_is_computed_identically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from marketpulse.market.providers import simulated

    ticks = [0, 5, 700, 1500, 3000, 4500, 6000, 6001]
    monkeypatch.setattr(simulated, "KEEP_BLOCKS", 100)
    monkeypatch.setattr(simulated, "MARKET_BLOCKS", 100)
    full = SimulatedSource(seed=9)
    want = {t: (full.bar("AAPL", t), full.history("AAPL", t, 253)) for t in ticks}
    monkeypatch.setattr(simulated, "KEEP_BLOCKS", 1)
    monkeypatch.setattr(simulated, "MARKET_BLOCKS", 2)
    src = SimulatedSource(seed=9)
    for t in sorted(ticks, reverse=True) + ticks:  # the newest first: the older are trimmed
        assert (src.bar("AAPL", t), src.history("AAPL", t, 253)) == want[t]
    path = src._paths["AAPL"]
    assert path.end - path.first <= 2 * BLOCK  # one kept block, and the one being filled
    assert len(src._market_blocks) <= 2
