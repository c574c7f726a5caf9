"""The console monitor's alert mini-language."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from marketpulse.alerts.console import parse_alert, print_quote
from marketpulse.alerts.rules import AlertType
from marketpulse.errors import ValidationFailed
from marketpulse.market.quotes import StockData


def test_parses_each_kind() -> None:
    a = parse_alert("TCS.NS price above 4000")
    assert (a.symbol, a.alert_type, a.comparison, a.threshold) == (
        "TCS.NS", AlertType.PRICE_THRESHOLD, "above", 4000.0,
    )  # fmt: skip
    assert parse_alert("infy.ns change below 2.5").alert_type is AlertType.PERCENTAGE_CHANGE
    assert parse_alert("AAPL volume above 3").alert_type is AlertType.VOLUME_SPIKE


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("TCS.NS price above", 'expected "SYMBOL (price|change|volume)'),
        ("TCS.NS jump above 4", "unknown kind 'jump'"),
        ("TCS.NS price sideways 4", "comparison must be 'above' or 'below'"),
        ("TCS.NS price above four", "'four' is not a number"),
        ("TCS.NS price above -4", "threshold must be >= 0"),
        ("TCS.NS price above nan", "finite"),
        ("T$S price above 4", "invalid symbol"),
    ],
)
def test_bad_specs_say_why(spec: str, needle: str) -> None:
    with pytest.raises(ValidationFailed, match=None) as info:
        parse_alert(spec)
    assert needle in info.value.message


def test_the_console_says_when_a_quote_is_a_closed_exchanges_closing_print(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stamp = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)
    base = StockData(symbol="AAPL", price=10.0, volume=1, timestamp=stamp, high=10.0, low=10.0,
                     open=10.0, close=10.0, source="yahoo")  # fmt: skip
    print_quote(base.model_copy(update={"market_open": True, "session_date": "2026-12-04"}))
    print_quote(base.model_copy(update={"market_open": False, "session_date": "2026-12-04"}))
    open_line, closed_line = capsys.readouterr().out.splitlines()
    assert "CLOSED" not in open_line
    assert closed_line.endswith("[yahoo] CLOSED (session 2026-12-04)")
