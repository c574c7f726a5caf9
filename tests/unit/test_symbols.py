"""The one symbol rule (``market/symbols.py``) and the dashboard's copy of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import marketpulse
from marketpulse.errors import ValidationFailed
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.symbols import (
    INPUT_PATTERN,
    SYMBOL_PATTERN,
    check_symbol,
    normalize_symbol,
    parse_symbol,
)

DOM_JS = Path(marketpulse.__file__).parent / "observability/dashboard/static/js/dom.js"
GOOD = ["AAPL", "TCS.NS", "M&M.NS", "^GSPC", "BRK-B", "EURUSD=X", "A", "X" * 20]
BAD = ["", " ", "AA PL", "M$M.NS", ".NS", "-A", "=X", "&M", "X" * 21, "TCS.NS\n.BO", "ÄPPLE"]


@pytest.mark.parametrize("symbol", GOOD)
def test_symbols_are_accepted_and_upper_cased(symbol: str) -> None:
    assert normalize_symbol(symbol) == symbol
    assert normalize_symbol(f"  {symbol.lower()} ") == symbol
    assert check_symbol(symbol.lower()) == symbol


@pytest.mark.parametrize("raw", [*BAD, None, 42, ["AAPL"]])
def test_anything_else_is_refused(raw: object) -> None:
    assert normalize_symbol(raw) is None
    with pytest.raises(ValidationFailed) as info:
        check_symbol(raw)
    assert info.value.code == "invalid_symbol" and "invalid symbol" in info.value.message


def test_check_symbol_carries_the_surface_code() -> None:
    with pytest.raises(ValidationFailed) as info:
        check_symbol("no way!", code="invalid_ticker")
    assert info.value.code == "invalid_ticker"


def test_the_simulated_market_knows_exactly_the_symbols() -> None:
    source = SimulatedSource(seed=1)
    assert all(source.knows(s) for s in GOOD)
    assert not any(source.knows(s) for s in BAD)


def test_the_dashboard_uses_the_same_pattern() -> None:
    found = re.search(r"export const SYMBOL_RE = /(.+)/;", DOM_JS.read_text(encoding="utf-8"))
    assert found is not None, "dom.js no longer defines SYMBOL_RE as a regex literal"
    assert found.group(1) == SYMBOL_PATTERN


def test_the_rule_is_checked_as_written_before_upper_casing() -> None:
    assert "ß".upper() == "SS" and normalize_symbol("ß") is None
    assert normalize_symbol("ﬀ") is None  # the ff ligature upper-cases to FF


def test_exact_takes_the_symbol_as_sent() -> None:
    assert normalize_symbol("tcs.ns", exact=True) == "TCS.NS"
    assert normalize_symbol(" AAPL", exact=True) is None
    with pytest.raises(ValueError, match="invalid symbol"):
        parse_symbol("AAPL ", exact=True)


def test_the_input_pattern_is_the_rule_in_either_case() -> None:
    assert SYMBOL_PATTERN.replace("A-Z", "A-Za-z") == INPUT_PATTERN
