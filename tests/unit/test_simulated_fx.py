"""The simulated market's exchange rates: deterministic, realistic, inverse, on stock dates."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from marketpulse.errors import PermanentSourceError
from marketpulse.market.ports import TickSource
from marketpulse.market.providers.replay import ReplaySource
from marketpulse.market.providers.simulated import SimulatedSource
from marketpulse.market.providers.simulated_fx import USD_LEVELS
from marketpulse.market.providers.tick_provider import TickQuoteProvider

TICKS = (-300, -1, 0, 1, 7, 1023, 1024, 5000)


def test_the_same_rate_on_every_instance_whatever_the_order_of_calls() -> None:
    a = SimulatedSource(seed=7)
    b = SimulatedSource(seed=7, history_days=20)
    b.bar("EURUSD=X", 3000)  # grow another path first: no effect on the values
    for pair in ("USDINR=X", "EURUSD=X", "GBPJPY=X"):
        for tick in (-20, 0, 5, 1500, 3000):
            assert a.bar(pair, tick) == b.bar(pair, tick)
    assert SimulatedSource(seed=8).bar("USDINR=X", 5) != a.bar("USDINR=X", 5)


def test_a_rate_and_its_inverse() -> None:
    s = SimulatedSource(seed=1)
    for tick in TICKS:
        usd_inr = s.bar("USDINR=X", tick)
        assert s.bar("INRUSD=X", tick).close == 1 / usd_inr.close  # exact against USD
        assert s.bar("INR=X", tick) == usd_inr  # Yahoo's short form
        eur_inr = s.bar("EURINR=X", tick).close
        assert s.bar("INREUR=X", tick).close == pytest.approx(1 / eur_inr, rel=1e-12)
        # a cross is the ratio of the two USD rates
        assert eur_inr == pytest.approx(usd_inr.close / s.bar("USDEUR=X", tick).close, rel=1e-12)
        same = s.bar("EUREUR=X", tick)
        assert (same.open, same.high, same.low, same.close) == (1.0, 1.0, 1.0, 1.0)


def test_levels_are_realistic_and_bars_are_sane() -> None:
    s = SimulatedSource(seed=3)
    bounds = {"USDINR=X": (70, 100), "EURUSD=X": (0.9, 1.3), "USDJPY=X": (120, 180),
              "GBPUSD=X": (1.1, 1.5), "USDCHF=X": (0.7, 1.05)}  # fmt: skip
    for pair, (lo, hi) in bounds.items():
        bars = s.history(pair, 250, 551)  # two years around tick 0
        assert len(bars) == 551
        assert all(lo < b.close < hi for b in bars), pair
        assert all(b.high >= max(b.open, b.close) >= min(b.open, b.close) >= b.low > 0
                   for b in bars)  # fmt: skip
        assert all(b.volume == 0 and b.adj_close == b.close for b in bars)
        assert all(b.open == prev.close for prev, b in pairwise(bars))
        moves = [math.log(b.close / a.close) for a, b in pairwise(bars)]
        daily = math.sqrt(sum(m * m for m in moves) / len(moves))
        assert 0.001 < daily < 0.01, pair  # a currency moves ~0.3-0.6 % a day, not 2 %
    assert s.bar("USDINR=X", 0).close == pytest.approx(USD_LEVELS["INR"], rel=0.02)


def test_rates_have_the_stock_dates() -> None:
    s = SimulatedSource(seed=1)
    fx = s.history("USDINR=X", 40, 30)
    stock = s.history("AAPL", 40, 30)
    assert [b.date for b in fx] == [b.date for b in stock]
    assert s.bar("EURUSD=X", 40).date == s.bar("MSFT", 40).date
    assert len(s.history("USDINR=X", -295, 100)) == 6  # history starts where the stocks' does
    assert s.history("USDINR=X", 5, 0) == []
    with pytest.raises(PermanentSourceError):
        s.bar("USDINR=X", -301)


def test_which_pairs_the_simulator_knows_and_their_currency() -> None:
    s: TickSource = SimulatedSource(seed=1)
    assert s.knows("USDINR=X") and s.knows("inr=x") and s.knows("EURGBP=X")
    assert not s.knows("USDVND=X")  # a currency without a simulated level: never invented
    with pytest.raises(PermanentSourceError, match="no simulated exchange rate"):
        s.bar("USDVND=X", 0)
    assert s.knows("AAPL") and s.knows("TCS.NS")
    assert (s.currency("USDINR=X"), s.currency("EURUSD=X")) == ("INR", "USD")
    assert (s.currency("TCS.NS"), s.currency("AAPL"), s.currency("BATS.L")) == ("INR", "USD", "GBP")
    assert ReplaySource().currency("MSFT") == "USD"


async def test_tick_quotes_carry_the_sources_currency() -> None:
    sim = TickQuoteProvider(SimulatedSource(seed=1))
    assert (await sim.quote("TCS.NS", 3)).currency == "INR"
    rate = await sim.quote("USDINR=X", 3)
    assert (rate.currency, rate.price, rate.volume) == ("INR", SimulatedSource(seed=1).bar(
        "USDINR=X", 3).close, 0)  # fmt: skip
    assert rate.is_sane()
    assert (await TickQuoteProvider(ReplaySource()).quote("IBM", 3)).currency == "USD"


def test_levels_keep_their_latest_blocks_and_an_older_range_is_computed_identically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from marketpulse.market.providers import simulated_fx

    spans = [(0, 300), (1000, 1253), (4000, 4253), (7000, 7253), (7001, 7254)]
    monkeypatch.setattr(simulated_fx, "KEEP_BLOCKS", 100)
    full = simulated_fx.FxWalk(7, -300)
    want = {s: full.levels("INR", *s).tolist() for s in spans}
    monkeypatch.setattr(simulated_fx, "KEEP_BLOCKS", 1)
    walk = simulated_fx.FxWalk(7, -300)
    for s in sorted(spans, reverse=True) + spans:  # the newest first: the older are trimmed
        assert walk.levels("INR", *s).tolist() == want[s]
    path = walk._paths["INR"]
    assert path.end - path.first <= 2 * simulated_fx.BLOCK
