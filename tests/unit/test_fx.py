"""Currency codes, minor units and pair symbols (``market/fx.py``), and the currency rule of
quote validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from marketpulse.errors import InvalidQuote, ValidationFailed
from marketpulse.market.fx import (
    BASE_CURRENCIES,
    KNOWN_CURRENCIES,
    currency_for_suffix,
    is_currency,
    normalise_currency,
    pair_symbol,
    parse_pair,
)
from marketpulse.market.providers.reference_rates import load_converter
from marketpulse.market.providers.simulated_fx import USD_LEVELS
from marketpulse.market.quotes import StockData
from marketpulse.market.validation import validate_quote


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("GBp", ("GBP", 100.0)),
        ("GBX", ("GBP", 100.0)),
        ("GBP", ("GBP", 1.0)),
        ("ZAc", ("ZAR", 100.0)),
        ("ZAC", ("ZAR", 100.0)),
        ("ZAR", ("ZAR", 1.0)),
        ("ILA", ("ILS", 100.0)),
        ("ILS", ("ILS", 1.0)),
        ("usd", ("USD", 1.0)),
        (" INR ", ("INR", 1.0)),
        ("EUR", ("EUR", 1.0)),
    ],
)
def test_normalise_currency_gives_the_iso_code_and_the_divisor(
    raw: str, expected: tuple[str, float]
) -> None:
    assert normalise_currency(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "  ", "XYZ", "DOLLARS", "US"])
def test_a_missing_or_unknown_currency_is_not_a_good_quote(raw: str | None) -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalise_currency(raw)
    assert caught.value.code == "invalid_currency"


def test_known_currencies_cover_the_reference_rates_and_the_majors() -> None:
    assert set(load_converter().currencies) <= KNOWN_CURRENCIES
    assert {
        "USD",
        "EUR",
        "GBP",
        "JPY",
        "INR",
        "CNY",
        "AED",
        "SAR",
        "VND",
        "NGN",
    } <= KNOWN_CURRENCIES
    assert all(len(c) == 3 and c.isupper() for c in KNOWN_CURRENCIES)
    assert is_currency("INR")
    assert not is_currency("inr")  # upper case only
    assert not is_currency("GBp")
    assert not is_currency("XYZ")


def test_pair_symbols_follow_yahoos_convention() -> None:
    assert pair_symbol("INR", "USD") == "INRUSD=X"
    assert pair_symbol("USD", "INR") == "USDINR=X"
    assert parse_pair("USDINR=X") == ("USD", "INR")
    assert parse_pair("eurusd=x") == ("EUR", "USD")
    assert parse_pair("INR=X") == ("USD", "INR")  # Yahoo's short form is against USD
    assert parse_pair("USDUSD=X") == ("USD", "USD")
    for not_a_pair in ("AAPL", "TCS.NS", "USDINR", "USDXYZ=X", "ABCDEF=X", "^GSPC", "USDINR=F"):
        assert parse_pair(not_a_pair) is None
    with pytest.raises(ValueError, match="not a currency"):
        pair_symbol("XYZ", "USD")
    for ccy, base in [("INR", "USD"), ("EUR", "JPY"), ("GBP", "GBP")]:
        assert parse_pair(pair_symbol(ccy, base)) == (ccy, base)


@pytest.mark.parametrize(
    ("symbol", "currency"),
    [
        ("AAPL", "USD"),
        ("^GSPC", "USD"),
        ("TCS.NS", "INR"),
        ("RELIANCE.BO", "INR"),
        ("M&M.NS", "INR"),
        ("BATS.L", "GBP"),
        ("GS2C.DE", "EUR"),
        ("MC.PA", "EUR"),
        ("7203.T", "JPY"),
        ("0700.HK", "HKD"),
        ("SHOP.TO", "CAD"),
        ("BHP.AX", "AUD"),
        ("NESN.SW", "CHF"),
        ("005930.KS", "KRW"),
        ("600519.SS", "CNY"),
        ("NPN.JO", "ZAR"),
        ("TEVA.TA", "ILS"),
        ("VOLV-B.ST", "SEK"),
        ("NOVO-B.CO", "DKK"),
        ("EQNR.OL", "NOK"),
        ("D05.SI", "SGD"),
        ("BRK.B", "USD"),  # not an exchange suffix: the guess stays USD
        ("USDINR=X", "INR"),
        ("INR=X", "INR"),
        ("EURUSD=X", "USD"),
    ],
)
def test_the_simulators_guess_from_the_suffix(symbol: str, currency: str) -> None:
    assert currency_for_suffix(symbol) == currency


def _quote(price: float, currency: str | None, source: str = "yahoo") -> StockData:
    fields: dict[str, object] = {} if currency is None else {"currency": currency}
    return StockData(
        symbol="X.L", price=price, volume=1, timestamp=datetime(2026, 1, 2, tzinfo=UTC),
        high=price, low=price, open=price, close=price, source=source, **fields,
    )  # fmt: skip


def test_a_source_switching_currency_is_a_rejected_quote() -> None:
    with pytest.raises(InvalidQuote, match="priced in USD"):
        validate_quote(_quote(42.0, "USD"), _quote(41.8, "GBP"))
    validate_quote(_quote(42.0, "GBP"), _quote(41.8, "GBP"))


def test_sources_that_disagree_on_currency_are_not_compared() -> None:
    # the simulator's guess (USD for a symbol without a suffix) against NSE's INR: no lock-in
    validate_quote(_quote(1500.0, "INR", "nse"), _quote(10.0, "USD", "simulated"))


def test_a_last_good_quote_without_a_stated_currency_is_compared_on_price_only() -> None:
    old = _quote(41.8, None)  # cached before quotes carried a currency: the default USD
    assert old.currency == "USD" and "currency" not in old.model_fields_set
    validate_quote(_quote(42.0, "GBP"), old)
    with pytest.raises(InvalidQuote, match="jump"):
        validate_quote(_quote(4200.0, "GBP"), old)
    assert (
        "currency"
        in StockData.model_validate_json(_quote(1.0, "GBP").model_dump_json()).model_fields_set
    )  # a cached quote keeps its stated currency


def test_every_base_currency_has_reference_rates_and_a_simulated_walk() -> None:
    ecb = load_converter()
    newest = max(ecb.bounds["USD"].last_date, ecb.bounds["EUR"].last_date)
    for code in BASE_CURRENCIES:
        assert code in USD_LEVELS, code
        assert code == "EUR" or ecb.bounds[code].last_date == newest, code
