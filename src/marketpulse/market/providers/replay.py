"""The ``replay`` market: real daily bars of AAPL, FB, GOOG, IBM and MSFT (2000-03-01..2013-03-01).

Data: the ``bokeh_sampledata.stocks`` dicts (Quandl WIKI prices, public domain). Open, high, low,
close and volume are unadjusted; ``adj_close`` is split- and dividend-adjusted. ``GOOGL`` is the
``GOOG`` series.

Guarantees:

- Pure: the bar at ``(symbol, tick)`` depends only on ``start``, ``step``, the symbol and the
  tick. Tick 0 is the first trading day on or after ``start``; each tick advances ``step``
  trading days (``step == 0`` freezes the market on the start day).
- Symbols stay aligned by date: a tick maps to a day of one common calendar (AAPL's trading days,
  which contain every other series' days), and each symbol is looked up on that date.
- Past the last day of the data the market holds that day; this is logged once per instance.
- An unknown symbol, or a day before the symbol's first bar (FB before 2012-05-18, any tick
  before 2000-03-01), raises ``PermanentSourceError``.
- ``history`` returns up to ``n`` consecutive trading days of the symbol ending at the tick's
  day, oldest first (a daily series whatever ``step`` is).
- Splits: the data's own. ``adj_close / close`` moves by a dividend's few percent at most, and
  by the ratio on a split's ex-date (AAPL 2:1 on 2000-06-21 and 2005-02-28, MSFT 2:1 on
  2003-02-18): a move beyond 25 % is a split of that ratio (the nearest fraction with a
  denominator up to 10). ``splits(symbol, tick)`` reports those of the last ``SPLIT_WINDOW``
  trading days up to the tick's day, as Yahoo's 5-day chart would.

The package's dicts are parsed into numpy arrays once per process (``load_stock_series``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from marketpulse.errors import PermanentSourceError
from marketpulse.market.quotes import Bar, FloatArray, Split

log = logging.getLogger(__name__)

DayArray = npt.NDArray[np.datetime64]
IntArray = npt.NDArray[np.int64]

SERIES = ("AAPL", "FB", "GOOG", "IBM", "MSFT")
SPLIT_WINDOW = 5  # trading days a split stays reported from its ex-date (Yahoo's 5-day chart)
SPLIT_MOVE = 1.25  # an adjustment factor moving more than this (or 1/this) in a day is a split
ALIASES: Mapping[str, str] = {"GOOGL": "GOOG"}
CALENDAR_SERIES = "AAPL"  # its trading days contain those of every other series


@dataclass(frozen=True, slots=True, eq=False)
class DailySeries:
    """One symbol's daily bars as parallel arrays, ordered by date."""

    dates: DayArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    adj_close: FloatArray
    volume: IntArray

    def bar(self, i: int) -> Bar:
        return Bar(
            date=str(self.dates[i]),
            open=float(self.open[i]),
            high=float(self.high[i]),
            low=float(self.low[i]),
            close=float(self.close[i]),
            adj_close=float(self.adj_close[i]),
            volume=int(self.volume[i]),
        )


@functools.cache
def series_splits(name: str) -> tuple[tuple[int, Split], ...]:
    """(index in the series, the split) of each split in one series, from its adjustment
    factor (see the module docstring)."""
    series = load_stock_series()[name]
    factor = series.adj_close / series.close
    moves = factor[1:] / factor[:-1]
    found = np.nonzero((moves > SPLIT_MOVE) | (moves < 1.0 / SPLIT_MOVE))[0]
    return tuple(
        (
            int(i) + 1,
            Split(
                date=str(series.dates[i + 1]),
                ratio=float(Fraction(float(moves[i])).limit_denominator(10)),
            ),
        )
        for i in found
    )


@functools.cache
def load_stock_series() -> Mapping[str, DailySeries]:
    """The five series, parsed once per process (pure data, never mutated)."""
    from bokeh_sampledata import stocks  # imported here: it reads a CSV on import

    loaded: dict[str, DailySeries] = {}
    for name in SERIES:
        raw = getattr(stocks, name)
        loaded[name] = DailySeries(
            dates=np.array(raw["date"], dtype="datetime64[D]"),
            open=np.array(raw["open"], dtype=np.float64),
            high=np.array(raw["high"], dtype=np.float64),
            low=np.array(raw["low"], dtype=np.float64),
            close=np.array(raw["close"], dtype=np.float64),
            adj_close=np.array(raw["adj_close"], dtype=np.float64),
            volume=np.array(raw["volume"], dtype=np.int64),
        )
    return loaded


class ReplaySource:
    """Replays real daily bars, ``step`` trading days per tick (see the module docstring)."""

    name: str = "replay"

    def __init__(self, start: str = "2012-03-01", step: int = 1) -> None:
        if step < 0:
            raise ValueError(f"replay step must be >= 0 trading days, got {step}")
        try:
            start_day = date.fromisoformat(start)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"replay start must be a date YYYY-MM-DD, got {start!r}") from exc
        self._series = load_stock_series()
        self._calendar = self._series[CALENDAR_SERIES].dates
        first, last = self._calendar[0], self._calendar[-1]
        day = np.datetime64(start_day, "D")
        if not first <= day <= last:
            raise ValueError(f"replay start {start} is outside the data ({first} to {last})")
        self.start = start
        self.step = step
        self._start_index = int(np.searchsorted(self._calendar, day, side="left"))
        self._last_index = len(self._calendar) - 1
        self._lock = threading.Lock()
        self._told_end = False

    @property
    def start_date(self) -> str:
        """The trading day shown at tick 0."""
        return str(self._calendar[self._start_index])

    def knows(self, symbol: str) -> bool:
        return self._canonical(symbol) in self._series

    def currency(self, symbol: str) -> str:
        """USD: every replayed series is a US listing."""
        return "USD"

    def bar(self, symbol: str, tick: int) -> Bar:
        """The real bar of the tick's day; raises ``PermanentSourceError`` if there is none."""
        series, i = self._locate(symbol, tick)
        return series.bar(i)

    def splits(self, symbol: str, tick: int) -> tuple[Split, ...]:
        """The splits of the last ``SPLIT_WINDOW`` trading days of the symbol up to the tick's
        day, oldest first (none where the symbol has no data)."""
        try:
            _, i = self._locate(symbol, tick)
        except PermanentSourceError:
            return ()
        events = series_splits(self._canonical(symbol))
        return tuple(split for at, split in events if i - SPLIT_WINDOW < at <= i)

    def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        """Up to ``n`` daily bars of the symbol ending at the tick's day, oldest first."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        series, i = self._locate(symbol, tick)
        return [series.bar(j) for j in range(max(0, i - n + 1), i + 1)]

    def _canonical(self, symbol: str) -> str:
        sym = symbol.upper()
        return ALIASES.get(sym, sym)

    def _day_index(self, tick: int) -> int:
        """Index in the common calendar of the day shown at ``tick`` (may be negative)."""
        index = self._start_index + tick * self.step
        if index > self._last_index:
            with self._lock:
                if not self._told_end:
                    self._told_end = True
                    log.info(
                        "replay data ends %s: the market holds its last day from here on",
                        self._calendar[self._last_index],
                    )
            return self._last_index
        return index

    def _locate(self, symbol: str, tick: int) -> tuple[DailySeries, int]:
        name = self._canonical(symbol)
        series = self._series.get(name)
        if series is None:
            known = ", ".join(sorted((*SERIES, *ALIASES)))
            raise PermanentSourceError(f"unknown symbol {symbol!r} for replay; known: {known}")
        index = self._day_index(tick)
        if index < 0:
            raise PermanentSourceError(
                f"no data for {symbol.upper()} at tick {tick}: replay data starts "
                f"{self._calendar[0]}"
            )
        day = self._calendar[index]
        i = int(np.searchsorted(series.dates, day, side="left"))
        if i >= len(series.dates) or series.dates[i] != day:
            raise PermanentSourceError(f"no data for {symbol.upper()} on {day}")
        return series, i
