"""IndicatorBook against batch references written in numpy (tests/support/indicator_reference.py),
on the replay's real closes.

Each kind equals its batch reference (Wilder's RSI, the SMA, the EMA seeded with the SMA of its
first n values as TA-Lib does, rolling max/min) to 1e-9 after warm-up, fed bar by bar and fed
several intraday quotes per session (the live bar replaced), and is None during warm-up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from marketpulse.alerts.indicators import MARGIN, WEEKS_52, IndicatorBook, bars_needed
from marketpulse.alerts.rules import Indicator, IndicatorValues
from marketpulse.market.providers.replay import load_stock_series
from support.indicator_reference import TOL, Spec, close_enough, reference, series

SPECS = [
    Spec("rsi"),
    Spec("rsi", 2),
    Spec("rsi", 1),
    Spec("rsi", 30),
    Spec("sma", 1),
    Spec("sma", 20),
    Spec("sma", 200),
    Spec("ema", 1),
    Spec("ema", 12),
    Spec("ema", 100),
    Spec("price_vs_sma", 50),
    Spec("price_vs_ema", 26),
    Spec("ma_cross", fast=50, slow=200, average="sma"),
    Spec("ma_cross", fast=12, slow=26, average="ema"),
    Spec("change_sessions", 1),
    Spec("change_sessions", 5),
    Spec("change_sessions", 260),
    Spec("from_52w_high"),
    Spec("from_52w_low"),
    Spec("drawdown", 1),
    Spec("drawdown", 20),
    Spec("drawdown", 400),
]


CASES = [
    ("AAPL", "2006-01-01", "2012-12-31"),
    ("IBM", "2003-01-01", "2008-12-31"),
    ("MSFT", "2009-01-01", "2012-12-31"),
    ("GOOG", "2004-08-19", "2008-12-31"),  # from its listing: warm-up on real data
]


@pytest.mark.parametrize(("symbol", "first", "last"), CASES)
@pytest.mark.parametrize("history", [0, 300])
def test_bar_by_bar_equals_the_batch_reference(
    symbol: str, first: str, last: str, history: int
) -> None:
    dates, x = series(symbol, first, last)
    refs = {s: reference(s, x) for s in SPECS}
    book = IndicatorBook(list(zip(dates[:history], x[:history], strict=True)), specs=SPECS)
    checked = 0
    for i in range(history, len(x)):
        book.observe(dates[i], float(x[i]))
        assert book.kept <= max(WEEKS_52, 401) + MARGIN  # the bound: drawdown 400 needs 400
        for spec in SPECS:
            want = refs[spec][i]
            got = book.value(spec)
            assert close_enough(got, want), (spec, dates[i], got, want)
            checked += not math.isnan(want)
    assert checked > len(SPECS) * 500  # whole years compared, not only the warm-up


@pytest.mark.parametrize(("symbol", "first", "last"), CASES[:3])
def test_intraday_quotes_replace_the_live_bar(symbol: str, first: str, last: str) -> None:
    """Each session gets its open, high, low, then its close; after the close every value
    equals the reference of the closes, and in between it is the reference of the completed
    closes plus the intraday price as the live bar (checked on a sample of sessions)."""
    s = load_stock_series()[symbol]
    sel = (s.dates >= np.datetime64(first)) & (s.dates <= np.datetime64(last))
    dates = [str(d) for d in s.dates[sel]]
    x, opens, highs, lows = s.close[sel], s.open[sel], s.high[sel], s.low[sel]
    refs = {spec: reference(spec, x) for spec in SPECS}
    book = IndicatorBook([], specs=SPECS)
    live_checked = 0
    for i in range(len(x)):
        for intraday in (opens[i], highs[i], lows[i]):
            book.observe(dates[i], float(intraday))
            if i % 97 == 0 or i == WEEKS_52 - 1:
                live = np.append(x[:i], intraday)
                for spec in SPECS:
                    want = reference(spec, live)[-1]
                    assert close_enough(book.value(spec), want), (spec, dates[i], intraday)
                    live_checked += not math.isnan(want)
        book.observe(dates[i], float(x[i]))
        assert book.session_date == dates[i]
        for spec in SPECS:
            got, want = book.value(spec), refs[spec][i]
            assert close_enough(got, want), (spec, dates[i], got, want)
    assert live_checked > 100


def test_warm_up_is_none_until_the_bars_needed() -> None:
    dates, x = series("IBM", "2010-01-01", "2012-12-31")
    book = IndicatorBook([], specs=SPECS)
    for i in range(len(x)):
        book.observe(dates[i], float(x[i]))
        for spec in SPECS:
            assert (book.value(spec) is None) == (i + 1 < bars_needed(spec)), (spec, i)
    assert bars_needed(Spec("rsi")) == 15
    assert bars_needed(Spec("from_52w_high")) == WEEKS_52
    assert bars_needed(Spec("ma_cross", fast=5, slow=30, average="ema")) == 30
    assert IndicatorBook([]).value(Spec("sma", 3)) is None


def test_a_history_is_a_start_like_any_other() -> None:
    """A book built from completed closes equals one fed those closes as quotes."""
    dates, x = series("MSFT", "2010-01-01", "2011-12-31")
    loaded = IndicatorBook(list(zip(dates[:-10], x[:-10], strict=True)), specs=SPECS)
    fed = IndicatorBook([], specs=SPECS)
    for d, c in zip(dates[:-10], x[:-10], strict=True):
        fed.observe(d, float(c))
    for d, c in zip(dates[-10:], x[-10:], strict=True):
        loaded.observe(d, float(c))
        fed.observe(d, float(c))
        for spec in SPECS:
            assert loaded.value(spec) == pytest.approx(fed.value(spec), rel=TOL, abs=TOL)


def test_a_quote_of_an_older_session_changes_nothing() -> None:
    dates, x = series("AAPL", "2011-01-01", "2011-12-31")
    book = IndicatorBook(list(zip(dates, x, strict=True)))
    before = [book.value(s) for s in SPECS]
    book.observe(dates[-5], 1.0)
    assert [book.value(s) for s in SPECS] == before
    assert book.session_date == dates[-1]


def test_the_book_stays_bounded_and_keeps_its_state_across_trims() -> None:
    """Years of bars: at most max(252, needs) + MARGIN closes; the talipp objects are purged
    with them and Wilder's RSI and the EMA carry on (equal to the reference from the start)."""
    dates, x = series("AAPL", "2000-03-01", "2013-03-01")
    specs = [Spec("rsi"), Spec("ema", 50), Spec("sma", 10), Spec("drawdown", 30)]
    book = IndicatorBook([], specs=specs)
    most = 0
    held: dict[str, int] = {}
    for i in range(len(x)):
        book.observe(dates[i], float(x[i]))
        most = max(most, book.kept)
        for name, n in book.held().items():
            held[name] = max(held.get(name, 0), n)
    assert most == WEEKS_52 + MARGIN == book.capacity
    # each talipp object purged to its own period (+ 2 + MARGIN); a window's deque <= its n
    assert held == {"rsi(14)": 48, "ema(50)": 84, "sma(10)": 44, "max(30)": held["max(30)"]}
    assert held["max(30)"] <= 30
    assert book.bars == len(x)
    for spec in specs:
        assert close_enough(book.value(spec), reference(spec, x)[-1]), spec
    wide = IndicatorBook(list(zip(dates, x, strict=True)), specs=[Spec("drawdown", 400)])
    assert wide.needs() == 400 and wide.kept == 400


def test_rebase_equals_the_divided_prices_from_the_start() -> None:
    """AAPL's 2:1 split of 2005-02-28 in the unadjusted closes: rebasing the book by 2 the
    evening before gives, every session after, the reference of the closes before divided
    by 2 followed by the real ones (no 50 % drop seen by any indicator)."""
    dates, x = series("AAPL", "2003-01-01", "2006-12-31")
    split = dates.index("2005-02-28")
    assert x[split] / x[split - 1] < 0.55  # the split is in the data
    adjusted = np.concatenate([x[:split] / 2.0, x[split:]])
    refs = {s: reference(s, adjusted) for s in SPECS}
    book = IndicatorBook(list(zip(dates[:100], x[:100], strict=True)), specs=SPECS)
    for i in range(100, split):
        book.observe(dates[i], float(x[i]))
    book.rebase(2.0)
    for i in range(split, len(x)):
        book.observe(dates[i], float(x[i]))
        for spec in SPECS:
            assert close_enough(book.value(spec), refs[spec][i]), (spec, dates[i])
    assert book.value(Spec("change_sessions", 1)) == pytest.approx(
        100 * (x[-1] / x[-2] - 1), rel=TOL
    )


@pytest.mark.parametrize("ratio", [0.0, -2.0, math.nan, math.inf])
def test_rebase_refuses_a_ratio_that_is_not_a_split(ratio: float) -> None:
    book = IndicatorBook([("2012-01-03", 10.0)])
    with pytest.raises(ValueError, match="split ratio"):
        book.rebase(ratio)


def test_bad_input_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="increasing date order"):
        IndicatorBook([("2012-01-04", 10.0), ("2012-01-03", 11.0)])
    with pytest.raises(ValueError, match="positive finite"):
        IndicatorBook([("2012-01-03", math.nan)])
    book = IndicatorBook([("2012-01-03", 10.0)])
    with pytest.raises(ValueError, match="positive finite"):
        book.observe("2012-01-04", 0.0)
    # the rule model refuses these first; the book does not rely on it
    unknown: dict[str, Any] = {"kind": "macd", "period": 3}
    with pytest.raises(ValueError, match="unknown indicator kind"):
        book.value(Indicator.model_construct(**unknown))
    with pytest.raises(ValueError, match="needs a period"):
        book.value(Indicator.model_construct(kind="sma"))


def test_a_book_is_the_rule_model_s_indicator_values() -> None:
    dates, x = series("IBM", "2012-01-01", "2012-12-31")
    values: IndicatorValues = IndicatorBook(list(zip(dates, x, strict=True)))  # mypy checks
    assert values.value(Indicator(kind="rsi")) == pytest.approx(
        reference(Spec("rsi", 14), x)[-1], rel=TOL
    )


def test_a_spec_first_asked_later_is_maintained_from_then_on() -> None:
    dates, x = series("IBM", "2010-01-01", "2011-06-30")
    book = IndicatorBook(list(zip(dates[:100], x[:100], strict=True)))
    late = Spec("ema", 10)
    for i in range(100, len(x)):
        book.observe(dates[i], float(x[i]))
        assert close_enough(book.value(late), reference(late, x)[i])
