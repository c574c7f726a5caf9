"""Exchange calendars (market/calendar.py): a weekend, an NSE holiday, a US half day, the
library's horizon and its estimate, the overrides, and which calendar a symbol follows.

The expected sessions are written out here from the exchanges' published hours, not derived
from the library: NYSE 09:30-16:00 New York (14:30-21:00 UTC in winter, 13:00 on the day after
Thanksgiving, 18:00 UTC), NSE 09:15-15:30 India (03:45-10:00 UTC).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import pytest

from marketpulse.market.calendar import (
    NSE,
    XNYS,
    Calendars,
    ExchangeCalendar,
    exchange_of,
    load_overrides,
    parse_overrides,
)
from support.logs import LogWatch


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def calendars() -> Calendars:
    return Calendars()


@pytest.mark.parametrize(
    ("symbol", "exchange"),
    [
        ("TCS.NS", NSE),
        ("M&M.NS", NSE),
        ("RELIANCE.BO", NSE),
        ("^NSEI", NSE),
        ("AAPL", XNYS),
        ("BRK-B", XNYS),
        ("^GSPC", XNYS),
        ("USDINR=X", None),
        ("GC=F", None),
        ("BTC-USD", None),
        ("VOD.L", None),
        ("^N225", None),
    ],
)
def test_which_calendar_a_symbol_follows(symbol: str, exchange: str | None) -> None:
    assert exchange_of(symbol) == exchange


def test_a_weekend_is_closed_and_belongs_to_fridays_session(calendars: Calendars) -> None:
    for symbol in ("AAPL", "TCS.NS"):
        state = calendars.state(symbol, utc("2026-12-05T12:00"))  # a Saturday
        assert state is not None
        assert not state.is_open
        assert state.session_date == date(2026, 12, 4)
    us = calendars.state("AAPL", utc("2026-12-05T12:00"))
    india = calendars.state("TCS.NS", utc("2026-12-05T12:00"))
    assert us is not None and india is not None
    assert us.last_close == utc("2026-12-04T21:00")
    assert us.next_open == utc("2026-12-07T14:30")
    assert india.last_close == utc("2026-12-04T10:00")
    assert india.next_open == utc("2026-12-07T03:45")
    assert not us.estimated and not india.estimated


def test_an_nse_holiday_is_closed_all_day(calendars: Calendars) -> None:
    nse = calendars.calendar(NSE)
    holiday = utc("2026-11-24T05:00")  # Guru Nanak Jayanti, a Tuesday, in session hours
    assert not nse.is_open(holiday)
    assert nse.session_date(holiday) == date(2026, 11, 23)
    assert nse.next_open(holiday) == utc("2026-11-25T03:45")
    previous = nse.previous_session(date(2026, 11, 25))
    assert previous is not None and previous.day == date(2026, 11, 23)
    assert nse.is_open(utc("2026-11-25T03:45"))  # the open is inside the session
    assert not nse.is_open(utc("2026-11-25T10:00"))  # the close is not


def test_a_us_half_day_closes_at_one_in_new_york(calendars: Calendars) -> None:
    nyse = calendars.calendar(XNYS)
    assert not nyse.is_open(utc("2026-11-26T16:00"))  # Thanksgiving
    assert nyse.is_open(utc("2026-11-27T17:59:59"))
    state = nyse.state(utc("2026-11-27T18:00"))
    assert not state.is_open
    assert state.session_date == date(2026, 11, 27)
    assert state.last_close == utc("2026-11-27T18:00")
    assert state.next_open == utc("2026-11-30T14:30")
    previous = nyse.previous_session(date(2026, 11, 27))
    assert previous is not None and previous.day == date(2026, 11, 25)


def test_past_the_horizon_the_holidays_estimate_is_used_and_flagged() -> None:
    nse = ExchangeCalendar(NSE)
    assert nse.horizon == date(2026, 12, 25)
    before = nse.state(utc("2026-12-23T12:00"))  # closed, next open 24 Dec: curated
    assert not before.estimated
    eve = nse.state(utc("2026-12-24T12:00"))  # the next open (28 Dec) is past the horizon
    assert eve.next_open == utc("2026-12-28T03:45") and eve.estimated
    republic_day = nse.state(utc("2027-01-26T05:00"))  # in the holidays package's XNSE list
    assert not republic_day.is_open and republic_day.estimated
    assert republic_day.session_date == date(2027, 1, 25)
    after = nse.state(utc("2027-01-27T05:00"))
    assert after.is_open and after.estimated


async def test_one_warning_per_calendar_when_its_horizon_has_run_out() -> None:
    nse = ExchangeCalendar(NSE)
    with LogWatch("marketpulse.market.calendar", logging.WARNING) as watch:
        nse.state(utc("2026-12-24T05:00"))  # before the horizon: nothing to say
        assert watch.records == []
        for day in ("2026-12-28", "2027-01-04", "2027-03-01"):
            nse.state(utc(f"{day}T05:00"))
        assert len(watch.records) == 1
        assert "2026-12-25" in watch.messages()[0]
        ExchangeCalendar(NSE).state(utc("2027-01-04T05:00"))  # another calendar says it once
        assert len(watch.records) == 2


def test_overrides_close_a_day_and_add_a_weekend_session() -> None:
    overrides = parse_overrides(
        {
            "_comment": "ignored",
            NSE: {
                "closed": [{"date": "2026-12-01", "reason": "test closure", "source": "test"}],
                "sessions": [
                    {
                        "date": "2026-11-08",
                        "open": "18:00",
                        "close": "19:00",
                        "reason": "a Sunday session",
                        "source": "test",
                    }
                ],
            },
        }
    )
    nse = ExchangeCalendar(NSE, overrides=overrides[NSE])
    assert not nse.is_open(utc("2026-12-01T05:00"))
    assert nse.session_date(utc("2026-12-01T05:00")) == date(2026, 11, 30)
    sunday = nse.state(utc("2026-11-08T12:45"))  # 18:15 in India
    assert sunday.is_open and sunday.session_date == date(2026, 11, 8)
    assert sunday.last_close == utc("2026-11-08T13:30")
    assert nse.next_open(utc("2026-11-07T12:00")) == utc("2026-11-08T12:30")


@pytest.mark.parametrize(
    "entry",
    [
        {"date": "2026-12-01", "source": "no reason"},
        {"date": "2026-12-01", "reason": "no source"},
        {"date": "2026-12-01", "reason": " ", "source": "blank reason"},
    ],
)
def test_an_override_without_its_reason_or_source_is_refused(entry: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="required"):
        parse_overrides({NSE: {"closed": [entry]}})


def test_a_special_session_must_close_after_it_opens() -> None:
    bad = {"date": "2026-11-08", "open": "19:00", "close": "18:00", "reason": "r", "source": "s"}
    with pytest.raises(ValueError, match="close"):
        parse_overrides({NSE: {"sessions": [bad]}})


def test_the_shipped_overrides_load_and_apply(calendars: Calendars) -> None:
    shipped = load_overrides()
    closed = {o.day for o in shipped[NSE] if o.kind == "closed"}
    assert date(2026, 1, 15) in closed
    assert all(o.reason and o.source for entries in shipped.values() for o in entries)
    assert not calendars.calendar(NSE).is_open(utc("2026-01-15T05:00"))


def test_the_schedule_is_built_once_per_year_and_kept_bounded() -> None:
    nse = ExchangeCalendar(NSE, max_years=3)
    nse.state(utc("2026-06-01T05:00"))
    built = dict(nse._years)
    for minute in range(0, 600, 5):  # a morning of polls builds nothing more
        nse.state(utc("2026-06-01T03:00").replace(minute=minute % 60, hour=3 + minute // 60))
    assert all(nse._years[y] is built[y] for y in built)
    for year in range(2020, 2027):
        nse.state(utc(f"{year}-06-01T05:00"))
    assert len(nse._years) <= 3


def test_a_naive_instant_is_refused(calendars: Calendars) -> None:
    with pytest.raises(ValueError, match="aware"):
        calendars.calendar(XNYS).state(datetime(2026, 12, 7, 15, 0))


def test_a_symbol_without_a_calendar_has_no_state(calendars: Calendars) -> None:
    assert calendars.state("USDINR=X", utc("2026-12-05T12:00")) is None
