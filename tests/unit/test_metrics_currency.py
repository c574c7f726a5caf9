"""Money in a base currency, checked by hand (docs/metrics.md, "Two currencies, by hand"):
values and weights convert with the rate, base-currency returns are (1 + r_local)(1 + r_fx) − 1,
a missing rate is an error (never 1:1), and mixed trading regions are flagged asynchronous."""

from __future__ import annotations

import numpy as np
import pytest

from marketpulse.errors import FxUnavailable
from marketpulse.sessions.metrics import compute_metric
from marketpulse.sessions.portfolio import total_in_base, value
from marketpulse.sessions.portfolio_inputs import (
    asynchronous_markets,
    common_returns,
    in_base_currency,
    inputs_from,
    market_stats,
    trading_region,
)

HOLDINGS = {"A": 10.0, "B.NS": 100.0}
PRICES = {"A": 100.0, "B.NS": 800.0}
CURRENCIES = {"A": "USD", "B.NS": "INR"}
FX = {"INR": 0.0125}


def test_values_and_weights_are_in_the_base_currency() -> None:
    val = value(HOLDINGS, PRICES, 7, base_currency="USD", currencies=CURRENCIES, fx=FX)
    assert val.total_value == 2000.0  # 10 × 100 + 100 × 800 × 0.0125
    assert val.fx == {"USD": 1.0, "INR": 0.0125}
    assert val.prices == PRICES  # each in its own currency
    in_inr = value(
        HOLDINGS, PRICES, 7, base_currency="INR", currencies=CURRENCIES, fx={"USD": 80.0}
    )
    assert in_inr.total_value == 160_000.0  # 10 × 100 × 80 + 100 × 800
    # rupees added to dollars would say B is 80000 / 81000 = 0.988 of the portfolio
    base_prices = {t: PRICES[t] * val.fx[CURRENCIES[t]] for t in HOLDINGS}
    history = [(f"2026-01-{d:02d}", 1.0 + 0.01 * (d % 3)) for d in range(1, 30)]
    stats = market_stats(tuple(HOLDINGS), {t: history for t in HOLDINGS})
    inputs = inputs_from(HOLDINGS, base_prices, stats)
    assert compute_metric("concentration", inputs, "B.NS").value == pytest.approx(0.5)


def test_a_missing_rate_is_an_error_never_one_to_one() -> None:
    with pytest.raises(FxUnavailable, match="INR"):
        total_in_base(HOLDINGS, PRICES, CURRENCIES, {"USD": 1.0})
    with pytest.raises(FxUnavailable):
        value(HOLDINGS, PRICES, 0, base_currency="USD", currencies=CURRENCIES, fx={})


def test_base_currency_returns_compound_the_local_and_the_fx_return() -> None:
    closes = [("2026-01-05", 800.0), ("2026-01-06", 800.0), ("2026-01-07", 880.0)]
    rates = [("2026-01-05", 0.0125), ("2026-01-06", 0.01375), ("2026-01-07", 0.0125)]
    converted = in_base_currency(closes, rates)
    assert converted == [
        ("2026-01-05", 10.0),
        ("2026-01-06", pytest.approx(11.0)),
        ("2026-01-07", pytest.approx(11.0)),
    ]
    dates = np.array([d for d, _ in converted])
    _, r = common_returns([(dates, np.array([p for _, p in converted]))])
    r_local = [0.0, 0.1]
    r_fx = [0.1, 0.0125 / 0.01375 - 1.0]
    expected = [(1 + a) * (1 + b) - 1 for a, b in zip(r_local, r_fx, strict=True)]
    assert r[:, 0] == pytest.approx(expected, abs=1e-15)
    assert r[:, 0] == pytest.approx([0.1, 0.0], abs=1e-15)
    # a date without a rate is dropped, never filled
    assert in_base_currency(closes, rates[:1] + rates[2:]) == [
        ("2026-01-05", 10.0),
        ("2026-01-07", 11.0),
    ]


def test_listings_in_different_trading_regions_are_asynchronous() -> None:
    assert trading_region("AAPL") == "americas" and trading_region("TCS.NS") == "india"
    assert trading_region("BATS.L") == "europe"
    assert asynchronous_markets(["AAPL", "TCS.NS"])
    assert not asynchronous_markets(["AAPL", "MSFT"])
    assert not asynchronous_markets(["TCS.NS", "RELIANCE.BO"])
