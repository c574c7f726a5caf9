"""Yahoo's previous close is the close of the session before the quote's own session
(market/providers/yahoo.py ``quote_from``), whatever later bar the chart already shows."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from marketpulse.market.providers.yahoo import quote_from


def chart(rows: dict[str, float]) -> pd.DataFrame:
    """Daily bars in the exchange's zone, as yfinance returns them (close given, NaN allowed)."""
    index = pd.DatetimeIndex([pd.Timestamp(d) for d in rows]).tz_localize("America/New_York")
    closes = list(rows.values())
    return pd.DataFrame(
        {
            "Open": closes,
            "High": closes,
            "Low": closes,
            "Close": closes,
            "Volume": [10] * len(rows),
        },
        index=index,
    )


def meta(price: float, when: datetime) -> dict[str, object]:
    return {
        "regularMarketPrice": price,
        "regularMarketTime": int(when.timestamp()),
        "currency": "USD",
    }


def test_a_bar_of_the_next_day_before_its_open_does_not_move_the_previous_close() -> None:
    # Friday's half-day close (13:00 New York); Yahoo already lists Monday's bar before its open
    frame = chart({"2026-11-24": 99.0, "2026-11-25": 101.0, "2026-11-27": 103.0,
                   "2026-11-30": float("nan")})  # fmt: skip
    friday_close = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    q = quote_from("AAPL", frame, meta(103.0, friday_close))
    assert q.previous_close == 101.0  # Wednesday: Thursday was Thanksgiving
    assert q.open == 103.0  # Friday's bar, not Monday's


def test_in_session_the_previous_close_is_the_last_session_before_today() -> None:
    frame = chart({"2026-11-25": 101.0, "2026-11-27": 103.0, "2026-11-30": 104.0})
    q = quote_from("AAPL", frame, meta(104.0, datetime(2026, 11, 30, 15, 0, tzinfo=UTC)))
    assert q.previous_close == 103.0


def test_a_session_without_its_bar_yet_is_measured_against_the_last_bar() -> None:
    frame = chart({"2026-11-25": 101.0, "2026-11-27": 103.0})  # Monday's bar not listed yet
    q = quote_from("AAPL", frame, meta(104.0, datetime(2026, 11, 30, 15, 0, tzinfo=UTC)))
    assert q.previous_close == 103.0
