"""The replay market: real bars from bokeh-sampledata, addressed by tick, aligned by date."""

from __future__ import annotations

import logging

import pytest
from bokeh_sampledata import stocks

from marketpulse.errors import PermanentSourceError
from marketpulse.market.ports import TickSource
from marketpulse.market.providers import ReplaySource, make_tick_source
from marketpulse.market.quotes import Bar

LOGGER = "marketpulse.market.providers.replay"


def real_bar(symbol: str, day: str) -> Bar:
    """The bar straight from the package's dicts."""
    raw = getattr(stocks, symbol)
    i = raw["date"].index(day)
    return Bar(
        date=day,
        open=raw["open"][i],
        high=raw["high"][i],
        low=raw["low"][i],
        close=raw["close"][i],
        adj_close=raw["adj_close"][i],
        volume=raw["volume"][i],
    )


def trading_days_from(day: str) -> list[str]:
    dates: list[str] = stocks.AAPL["date"]
    return dates[dates.index(day) :]


def test_is_a_tick_source() -> None:
    source: TickSource = ReplaySource()
    assert source.name == "replay"


def test_tick_zero_is_the_real_bar_of_the_start_day() -> None:
    source = ReplaySource(start="2012-03-01")
    for symbol in ("AAPL", "GOOG", "IBM", "MSFT"):
        assert source.bar(symbol, 0) == real_bar(symbol, "2012-03-01")


def test_start_on_a_non_trading_day_rolls_forward() -> None:
    source = ReplaySource(start="2012-03-03")  # a Saturday
    assert source.start_date == "2012-03-05"
    assert source.bar("AAPL", 0) == real_bar("AAPL", "2012-03-05")


def test_each_tick_advances_step_trading_days() -> None:
    days = trading_days_from("2012-03-01")
    one, five = ReplaySource(step=1), ReplaySource(step=5)
    for tick in (1, 2, 7):
        assert one.bar("MSFT", tick) == real_bar("MSFT", days[tick])
        assert five.bar("MSFT", tick) == real_bar("MSFT", days[5 * tick])


def test_step_zero_freezes_the_market() -> None:
    source = ReplaySource(step=0)
    first = source.bar("IBM", 0)
    assert all(source.bar("IBM", tick) == first for tick in (1, 10, 10_000))


def test_symbols_are_aligned_by_date() -> None:
    source = ReplaySource(step=3)
    for tick in (20, 40, 80):  # FB trades from tick 19 at step 3
        assert len({source.bar(s, tick).date for s in ("AAPL", "FB", "GOOG", "IBM", "MSFT")}) == 1


def test_googl_is_the_goog_series() -> None:
    source = ReplaySource()
    assert source.knows("GOOGL")
    assert source.bar("GOOGL", 12) == source.bar("GOOG", 12)
    assert source.history("GOOGL", 12, 30) == source.history("GOOG", 12, 30)


def test_fb_before_its_ipo_raises_and_trades_after() -> None:
    source = ReplaySource(start="2012-03-01")
    with pytest.raises(PermanentSourceError, match=r"no data for FB on 2012-03-01"):
        source.bar("FB", 0)
    ipo = trading_days_from("2012-03-01").index("2012-05-18")
    assert source.bar("FB", ipo) == real_bar("FB", "2012-05-18")
    with pytest.raises(PermanentSourceError):
        source.bar("FB", ipo - 1)


def test_unknown_symbol_raises_listing_the_known_ones() -> None:
    source = ReplaySource()
    assert not source.knows("TSLA")
    with pytest.raises(PermanentSourceError) as info:
        source.bar("TSLA", 0)
    for known in ("AAPL", "FB", "GOOG", "GOOGL", "IBM", "MSFT"):
        assert known in info.value.message


def test_history_at_tick_zero_is_253_days_ending_at_the_start() -> None:
    source = ReplaySource(start="2012-03-01", step=5)
    bars = source.history("AAPL", 0, 253)
    assert len(bars) == 253
    assert bars[-1] == real_bar("AAPL", "2012-03-01")
    dates: list[str] = stocks.AAPL["date"]
    end = dates.index("2012-03-01")
    assert [b.date for b in bars] == dates[end - 252 : end + 1]
    assert bars[0] == real_bar("AAPL", dates[end - 252])


def test_history_is_daily_whatever_the_step() -> None:
    bars = ReplaySource(step=5).history("IBM", 2, 3)
    days = trading_days_from("2012-03-01")
    assert [b.date for b in bars] == days[8:11]


def test_history_stops_at_the_first_bar() -> None:
    source = ReplaySource()
    ipo = trading_days_from("2012-03-01").index("2012-05-18")
    bars = source.history("FB", ipo + 4, 253)
    assert len(bars) == 5
    assert bars[0].date == "2012-05-18"


def test_end_of_data_holds_the_last_day_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    source = ReplaySource(start="2013-02-25", step=1)
    last = real_bar("AAPL", "2013-03-01")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert source.bar("AAPL", 4) == last
        assert caplog.records == []
        assert source.bar("AAPL", 5) == last
        assert source.bar("AAPL", 500) == last
        assert source.history("AAPL", 6, 2)[-1] == last
        assert source.bar("MSFT", 9) == real_bar("MSFT", "2013-03-01")
    held = [r for r in caplog.records if r.name == LOGGER]
    assert len(held) == 1
    assert held[0].levelno == logging.INFO
    assert "2013-03-01" in held[0].getMessage()


def test_each_instance_logs_the_end_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(2):
            source = ReplaySource(start="2013-03-01")
            source.bar("IBM", 1)
            source.bar("IBM", 2)
    assert len([r for r in caplog.records if r.name == LOGGER]) == 2


def test_same_bars_on_any_instance_in_any_call_order() -> None:
    a = ReplaySource(step=2)
    late_first = (a.bar("AAPL", 100), a.bar("AAPL", 3))
    b = ReplaySource(step=2)
    assert (b.bar("AAPL", 3), b.bar("AAPL", 100)) == late_first[::-1]


def test_ticks_before_the_data_raise() -> None:
    source = ReplaySource(start="2000-03-01")
    with pytest.raises(PermanentSourceError):
        source.bar("AAPL", -1)


@pytest.mark.parametrize("start", ["1999-12-31", "2013-03-02", "2012-13-01", "yesterday", ""])
def test_start_outside_or_not_a_date_is_refused(start: str) -> None:
    with pytest.raises(ValueError, match="replay start"):
        ReplaySource(start=start)


def test_negative_step_is_refused() -> None:
    with pytest.raises(ValueError, match="step"):
        ReplaySource(step=-1)


def test_factory_builds_the_replay_source() -> None:
    source = make_tick_source("replay", seed=1, replay_start="2012-06-01", replay_step=2)
    assert source.name == "replay"
    assert source.bar("AAPL", 0) == real_bar("AAPL", "2012-06-01")
