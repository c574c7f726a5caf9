"""The ECB reference rates: the offline last resort for exchange rates, stale and dated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest

from marketpulse.errors import PermanentSourceError
from marketpulse.market.providers.reference_rates import ReferenceRates, load_converter

WALL = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


@pytest.fixture
async def ecb() -> AsyncIterator[ReferenceRates]:
    provider = ReferenceRates(wall=lambda: WALL)
    try:
        yield provider
    finally:
        await provider.close()


def last_common_day(a: str, b: str) -> date:
    rates = load_converter()
    return min(rates.bounds[a].last_date, rates.bounds[b].last_date)  # type: ignore[no-any-return]


async def test_a_rate_is_served_stale_with_its_date(ecb: ReferenceRates) -> None:
    q = await ecb.quote("USDINR=X", 0)
    day = last_common_day("USD", "INR")
    assert (q.symbol, q.source, q.stale, q.currency) == ("USDINR=X", "ecb", True, "INR")
    assert q.timestamp == datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert q.age_s == WALL - q.timestamp.timestamp()
    assert q.price == q.open == q.high == q.low == q.close
    assert q.volume == 0 and q.is_sane()
    assert 50 < q.price < 150  # rupees per dollar, not 1:1


async def test_cross_rates_are_the_packages(ecb: ReferenceRates) -> None:
    rates = load_converter()
    for ccy, base in [("USD", "INR"), ("INR", "USD"), ("EUR", "USD"), ("GBP", "JPY")]:
        q = await ecb.quote(f"{ccy}{base}=X", 0)
        assert q.price == rates.convert(1.0, ccy, base, date=q.timestamp.date())
        assert q.currency == base
    assert (await ecb.quote("INR=X", 0)).price == (await ecb.quote("USDINR=X", 0)).price
    assert (await ecb.quote("EUREUR=X", 0)).price == 1.0


async def test_unknown_currencies_and_stocks_are_permanent_errors(ecb: ReferenceRates) -> None:
    with pytest.raises(PermanentSourceError, match="no reference rate for VND"):
        await ecb.quote("USDVND=X", 0)
    for symbol in ("AAPL", "TCS.NS", "USDXYZ=X"):
        with pytest.raises(PermanentSourceError, match="not a currency pair"):
            await ecb.quote(symbol, 0)
        assert not ecb.knows(symbol)
    with pytest.raises(PermanentSourceError):
        await ecb.history("AAPL", 0, 5)
    assert ecb.knows("USDINR=X") and not ecb.knows("USDVND=X")  # loaded by now


async def test_history_is_the_files_business_days_ending_at_the_rate(
    ecb: ReferenceRates,
) -> None:
    bars = await ecb.history("USDINR=X", 0, 253)
    q = await ecb.quote("USDINR=X", 0)
    assert len(bars) == 253
    assert bars[-1].date == q.timestamp.date().isoformat() and bars[-1].close == q.price
    days = [date.fromisoformat(b.date) for b in bars]
    assert days == sorted(days) and len(set(days)) == len(days)
    assert all(d.weekday() < 5 for d in days)
    assert days[-1] - days[0] < timedelta(days=400)  # one year of ECB days, give or take
    rates = load_converter()
    assert all(b.close == rates.convert(1.0, "USD", "INR", date=d)
               for b, d in zip(bars, days, strict=True))  # fmt: skip
    assert all(b.volume == 0 and b.adj_close == b.close for b in bars)
    assert len(await ecb.history("EURUSD=X", 0, 3)) == 3
    assert await ecb.history("EURUSD=X", 0, 0) == []


async def test_a_retired_currency_is_served_with_its_last_date(ecb: ReferenceRates) -> None:
    q = await ecb.quote("CYPUSD=X", 0)  # the Cyprus pound, replaced by the euro in 2008
    assert q.stale and q.timestamp.year == 2007
