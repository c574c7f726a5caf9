"""Indicators of one symbol's daily closes plus the live bar, O(1) per quote (pure, no I/O).

The series an indicator sees (issue 19's contract, docs/alerts.md "Indicators"): the daily
closes of the completed sessions, oldest first, then the live price as the current session's
bar. ``observe(session_date, price)`` replaces the last bar when it is of the same session and
appends a bar when the session is newer (an older session is ignored: quotes of a symbol
arrive in order). So the last bar is always the one a later quote of its session replaces:
a book built from completed closes alone treats the last of them as replaceable too, which is
right (a quote of that session after its close is its closing print).

- ``rsi``, ``sma``, ``ema`` (and the kinds built on the averages) come from ``talipp``, whose
  ``add`` / ``update`` cost O(1): RSI is Wilder's (the first averages are the simple means of
  the first ``n`` gains and losses, then ``avg = (avg * (n - 1) + x) / n``), EMA is seeded with
  the SMA of its first ``n`` values (TA-Lib's default), as docs/alerts.md details.
- The max/min windows (52-week high and low, the N-session drawdown) are monotonic deques over
  the bars before the live one, combined with the live bar when read: O(1) amortised per bar,
  and replacing the live bar costs nothing.
- Values are None during warm-up (fewer bars than the kind needs, ``bars_needed``).

Bound: a book keeps at most ``max(252, the bars its specs need) + MARGIN`` closes, each talipp
object at most ``n + 2 + MARGIN`` inputs and outputs (purged from the oldest: its state,
Wilder's averages or the EMA, carries on unchanged). The specs given to the constructor are
seeded from every close given, then the closes are trimmed; a spec first asked of a book
later warms up from what the book kept (the feed names its specs when it builds a book:
``IndicatorBook(closes, specs=...)``).

``rebase(ratio)`` divides every stored price by ``ratio`` (a split of ``ratio``:1), the
talipp state included: prices, averages, Wilder's gains and losses are scaled, RSI is
unchanged, so a book rebased equals one fed the divided prices from its start.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Protocol

from talipp.indicators import EMA, RSI, SMA

from marketpulse.market.quotes import Bar

WEEKS_52 = 252  # sessions in the 52-week window
MARGIN = 32  # closes kept beyond the need before a trim (a trim is amortised over them)
DEFAULT_RSI = 14
MAX_PLANS = 64  # distinct specs a book remembers how to read (a cache, cleared when full)

AVERAGE_KINDS = ("sma", "ema")
KINDS = (
    "rsi",
    "sma",
    "ema",
    "price_vs_sma",
    "price_vs_ema",
    "ma_cross",
    "change_sessions",
    "from_52w_high",
    "from_52w_low",
    "drawdown",
)


class IndicatorSpec(Protocol):
    """What a book reads of an indicator spec (``alerts.rules.Indicator`` has these fields)."""

    @property
    def kind(self) -> str: ...

    @property
    def period(self) -> int | None: ...

    @property
    def fast(self) -> int | None: ...

    @property
    def slow(self) -> int | None: ...

    @property
    def average(self) -> str | None: ...


# the series a book maintains: talipp's ("rsi" | "sma" | "ema", n), the windows ("max"|"min", n)
SeriesKey = tuple[str, int]


def _period(spec: IndicatorSpec) -> int:
    if spec.period is None:
        if spec.kind == "rsi":
            return DEFAULT_RSI
        raise ValueError(f"indicator {spec.kind!r} needs a period")
    return spec.period


def _average(spec: IndicatorSpec) -> Literal["sma", "ema"]:
    avg = spec.average or "sma"
    if avg not in AVERAGE_KINDS:
        raise ValueError(f"average must be 'sma' or 'ema', got {avg!r}")
    return "sma" if avg == "sma" else "ema"


def series_of(spec: IndicatorSpec) -> list[SeriesKey]:
    """The maintained series ``spec``'s value is computed from."""
    kind = spec.kind
    if kind in ("rsi", "sma", "ema"):
        return [(kind, _period(spec))]
    if kind in ("price_vs_sma", "price_vs_ema"):
        return [(kind.removeprefix("price_vs_"), _period(spec))]
    if kind == "ma_cross":
        if spec.fast is None or spec.slow is None:
            raise ValueError("ma_cross needs fast and slow")
        avg = _average(spec)
        return [(avg, spec.fast), (avg, spec.slow)]
    if kind == "change_sessions":
        _period(spec)
        return []  # read from the stored closes
    if kind == "from_52w_high":
        return [("max", WEEKS_52)]
    if kind == "from_52w_low":
        return [("min", WEEKS_52)]
    if kind == "drawdown":
        return [("max", _period(spec))]
    raise ValueError(f"unknown indicator kind {kind!r}; choose one of {', '.join(KINDS)}")


def bars_needed(spec: IndicatorSpec) -> int:
    """Bars (completed sessions plus the live one) before ``spec`` has a value."""
    kind = spec.kind
    if kind == "rsi" or kind == "change_sessions":
        return _period(spec) + 1
    if kind == "ma_cross":
        series_of(spec)  # validates fast and slow
        return max(spec.fast or 0, spec.slow or 0)
    if kind in ("from_52w_high", "from_52w_low"):
        return WEEKS_52
    series_of(spec)  # validates the kind
    return _period(spec)


@dataclass(frozen=True, slots=True)
class _Plan:
    """How a spec's value is read: its kind, the bars it needs, its series, its period."""

    kind: str
    need: int
    keys: tuple[SeriesKey, ...]
    n: int


class _Extreme:
    """The max (or min) of the last ``n`` bars, the live one included: a monotonic deque of
    (bar index, close) over the bars before the live one, read together with the live bar."""

    __slots__ = ("is_max", "n", "q")

    def __init__(self, n: int, is_max: bool) -> None:
        self.n = n
        self.is_max = is_max
        self.q: deque[tuple[int, float]] = deque()

    def push(self, i: int, x: float) -> None:
        """Bar ``i`` (no longer live) closed at ``x``; bars leave as later ones dominate them."""
        q = self.q
        if self.is_max:
            while q and q[-1][1] <= x:
                q.pop()
        else:
            while q and q[-1][1] >= x:
                q.pop()
        q.append((i, x))
        lo = i + 2 - self.n  # the oldest bar in a window whose live bar is i + 1
        while q and q[0][0] < lo:
            q.popleft()

    def read(self, live_i: int, live_x: float) -> float:
        q = self.q
        lo = live_i + 1 - self.n
        while q and q[0][0] < lo:
            q.popleft()
        if not q:
            return live_x
        best = q[0][1]
        return max(best, live_x) if self.is_max else min(best, live_x)

    def scale(self, ratio: float) -> None:
        self.q = deque((i, x / ratio) for i, x in self.q)


def _talipp(kind: str, n: int, closes: list[float]) -> Any:
    """A talipp indicator of ``kind`` fed ``closes`` (talipp ships no type information)."""
    if kind == "rsi":
        return RSI(n, input_values=closes)
    if kind == "sma":
        return SMA(n, input_values=closes)
    return EMA(n, input_values=closes)


class IndicatorBook:
    """One symbol's indicators (implements ``alerts.rules.IndicatorValues``).

    ``closes``: the completed sessions as (``YYYY-MM-DD``, close), oldest first. ``specs``: the
    indicators to maintain from the start (others are added when first asked for).
    """

    def __init__(
        self, closes: Sequence[tuple[str, float]], *, specs: Iterable[IndicatorSpec] = ()
    ) -> None:
        wanted = list(specs)
        self._need = max([WEEKS_52, *(bars_needed(s) for s in wanted)])
        last: str | None = None
        for day, close in closes:
            if last is not None and day <= last:
                raise ValueError(f"closes must be in increasing date order: {day} after {last}")
            _check_price(close)
            last = day
        self._last_date = last
        self._closes: list[float] = [float(c) for _, c in closes]
        self._base = 0  # bars dropped before closes[0]
        self._talipp: dict[SeriesKey, Any] = {}
        self._extremes: dict[SeriesKey, _Extreme] = {}
        self._plans: dict[tuple[str, int | None, int | None, int | None, str | None], _Plan] = {}
        self._seen: dict[int, tuple[IndicatorSpec, _Plan]] = {}  # id(spec) -> spec, its plan
        for spec in wanted:  # seeded from every close given (Wilder's averages, the EMA)
            self._register(spec)
        if len(self._closes) > self._need:
            self._trim(len(self._closes) - self._need)

    # -- state ---------------------------------------------------------------------------

    @property
    def bars(self) -> int:
        """Bars seen (the live one included), trimmed ones too: warm-up is against this."""
        return self._base + len(self._closes)

    @property
    def session_date(self) -> str | None:
        """The session of the last bar (the one a quote of the same session replaces)."""
        return self._last_date

    @property
    def kept(self) -> int:
        """Closes stored now (at most ``capacity``)."""
        return len(self._closes)

    @property
    def capacity(self) -> int:
        return self._need + MARGIN

    def held(self) -> dict[str, int]:
        """Values held per maintained series (talipp's inputs; a window's deque), by name."""
        out = {f"{k}({n})": len(ind.input_values) for (k, n), ind in self._talipp.items()}
        out.update({f"{k}({n})": len(ext.q) for (k, n), ext in self._extremes.items()})
        return out

    def needs(self) -> int:
        """Bars the book's specs need (at least the 52 weeks)."""
        return self._need

    # -- updates -------------------------------------------------------------------------

    def observe(self, session_date: str, price: float) -> None:
        """A quote: replaces the live bar if of its session, else starts a new bar."""
        _check_price(price)
        closes = self._closes
        if self._last_date is not None and session_date < self._last_date:
            return  # an older session than the book's: out of order, not applied
        if session_date == self._last_date and closes:
            closes[-1] = price
            for ind in self._talipp.values():
                ind.update(price)
            return
        if closes:  # the live bar is complete: it enters the windows
            i, x = self._base + len(closes) - 1, closes[-1]
            for ext in self._extremes.values():
                ext.push(i, x)
        closes.append(price)
        for (_, n), ind in self._talipp.items():
            ind.add(price)
            if len(ind.input_values) > n + 2 + MARGIN:
                _fit(ind, n)
        self._last_date = session_date
        if len(closes) > self._need + MARGIN:
            self._trim(len(closes) - self._need)

    def rebase(self, ratio: float) -> None:
        """A split of ``ratio``:1: every stored price is divided by ``ratio``."""
        if not math.isfinite(ratio) or ratio <= 0:
            raise ValueError(f"a split ratio must be a positive finite number, got {ratio}")
        self._closes = [c / ratio for c in self._closes]
        for (kind, _), ind in self._talipp.items():
            _rescale(kind, ind, ratio)
        for ext in self._extremes.values():
            ext.scale(ratio)

    def _trim(self, drop: int) -> None:
        del self._closes[:drop]
        self._base += drop

    def _register(self, spec: IndicatorSpec) -> None:
        self._need = max(self._need, bars_needed(spec))
        for key in series_of(spec):
            kind, n = key
            if kind in ("max", "min"):
                if key not in self._extremes:
                    ext = _Extreme(n, kind == "max")
                    for j, x in enumerate(self._closes[:-1]):
                        ext.push(self._base + j, x)
                    self._extremes[key] = ext
            elif key not in self._talipp and not (kind == "rsi" and n == 1):
                self._talipp[key] = ind = _talipp(kind, n, self._closes)
                _fit(ind, n)

    # -- values --------------------------------------------------------------------------

    def value(self, spec: IndicatorSpec) -> float | None:
        """The observed value of ``spec`` (contract formulas), None during warm-up."""
        seen = self._seen.get(id(spec))  # the same spec object again: no key to build
        if seen is not None and seen[0] is spec:
            plan = seen[1]
        else:
            key = (spec.kind, spec.period, spec.fast, spec.slow, spec.average)
            plan = self._plans.get(key) or self._plan(spec)
            if len(self._seen) >= MAX_PLANS:
                self._seen.clear()  # spec objects made afresh per call: only this path is lost
            self._seen[id(spec)] = (spec, plan)
        if self._base + len(self._closes) < plan.need:
            return None
        return _VALUES[plan.kind](self, plan)

    def _plan(self, spec: IndicatorSpec) -> _Plan:
        """How ``spec`` is read (validated once; its series registered)."""
        if spec.kind not in KINDS:
            raise ValueError(
                f"unknown indicator kind {spec.kind!r}; choose one of {', '.join(KINDS)}"
            )
        keys = tuple(series_of(spec))
        n = spec.period if spec.period is not None else DEFAULT_RSI
        plan = _Plan(spec.kind, bars_needed(spec), keys, n)
        self._register(spec)
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()  # a cache: only the validation is done again
            self._seen.clear()
        self._plans[(spec.kind, spec.period, spec.fast, spec.slow, spec.average)] = plan
        return plan

    def _average_value(self, plan: _Plan) -> float | None:
        return self._series(plan.keys[0])

    def _price_vs(self, plan: _Plan) -> float | None:
        avg = self._series(plan.keys[0])
        return None if avg is None else 100.0 * (self._closes[-1] / avg - 1.0)

    def _ma_cross(self, plan: _Plan) -> float | None:
        fast, slow = self._series(plan.keys[0]), self._series(plan.keys[1])
        if fast is None or slow is None:
            return None
        return 100.0 * (fast / slow - 1.0)

    def _change(self, plan: _Plan) -> float | None:
        closes, n = self._closes, plan.n
        if len(closes) <= n:
            return None  # trimmed below the need (a spec first asked after a trim)
        return 100.0 * (closes[-1] / closes[-1 - n] - 1.0)

    def _below_high(self, plan: _Plan) -> float | None:
        price = self._closes[-1]
        return 100.0 * (1.0 - price / self._extremes[plan.keys[0]].read(self.bars - 1, price))

    def _above_low(self, plan: _Plan) -> float | None:
        price = self._closes[-1]
        return 100.0 * (price / self._extremes[plan.keys[0]].read(self.bars - 1, price) - 1.0)

    def _series(self, key: SeriesKey) -> float | None:
        out = self._talipp[key].output_values
        value = out[-1] if out else None
        return None if value is None else float(value)

    def _rsi(self, plan: _Plan) -> float | None:
        n = plan.n
        if n == 1:  # Wilder with n = 1 is the last change alone (talipp divides by n - 1 = 0)
            if len(self._closes) < 2:
                return None
            change = self._closes[-1] - self._closes[-2]
            return 0.0 if change < 0 else 100.0
        return self._series(("rsi", n))


_VALUES: dict[str, Callable[[IndicatorBook, _Plan], float | None]] = {
    "rsi": IndicatorBook._rsi,
    "sma": IndicatorBook._average_value,
    "ema": IndicatorBook._average_value,
    "price_vs_sma": IndicatorBook._price_vs,
    "price_vs_ema": IndicatorBook._price_vs,
    "ma_cross": IndicatorBook._ma_cross,
    "change_sessions": IndicatorBook._change,
    "from_52w_high": IndicatorBook._below_high,
    "from_52w_low": IndicatorBook._above_low,
    "drawdown": IndicatorBook._below_high,
}


def _check_price(price: float) -> None:
    if not math.isfinite(price) or price <= 0:
        raise ValueError(f"a close must be a positive finite number, got {price}")


def _fit(ind: Any, n: int) -> None:
    """Purge a talipp indicator of period ``n`` to its last ``n + 2`` inputs: its state (the
    last average, Wilder's averages) carries on, and it never sees the short series again
    at which talipp seeds (``n`` inputs for the EMA, ``n + 1`` for the RSI)."""
    excess = len(ind.input_values) - (n + 2)
    if excess > 0:
        ind.purge_oldest(excess)


def _rescale(kind: str, ind: Any, ratio: float) -> None:
    """Divide a talipp indicator's prices by ``ratio`` in place (its state, not a replay)."""
    ind.input_values = [None if x is None else x / ratio for x in ind.input_values]
    if kind == "rsi":  # scale-free output; Wilder's average gain and loss are prices
        ind.avg_gain[:] = [x / ratio for x in ind.avg_gain]
        ind.avg_loss[:] = [x / ratio for x in ind.avg_loss]
    else:
        ind.output_values = [None if x is None else x / ratio for x in ind.output_values]


SPLIT_MOVE = 1.25  # a day's move of the adjustment factor beyond this (or 1/this) is a split


def split_adjusted(bars: Sequence[Bar], until: str) -> list[tuple[str, float]]:
    """The closes of ``bars`` dated before ``until`` (a session date), in the units of the
    latest bar dated ``until`` or earlier: a split between a bar and that one divides the bar's
    close by its ratio, so the series runs on into the live price without a false drop.

    A split is read off the adjustment factor ``adj_close / close``: it moves by a dividend's
    few percent at most, and by the split's ratio on its ex-date (a move beyond ``SPLIT_MOVE``;
    the ratio is the nearest fraction with a denominator up to 10). A source whose closes are
    already split-adjusted (yfinance) shows no such move and is left as it is."""
    kept = [b for b in bars if b.date <= until]
    out: list[tuple[str, float]] = []
    divisor = 1.0
    for k in range(len(kept) - 1, -1, -1):
        bar = kept[k]
        if k < len(kept) - 1:
            divisor *= split_between(bar, kept[k + 1]) or 1.0
        if bar.date < until:
            out.append((bar.date, bar.close / divisor))
    out.reverse()
    return out


def split_between(before: Bar, after: Bar) -> float | None:
    """The ratio of a split between two consecutive daily bars, read off their adjustment
    factors (see ``split_adjusted``), or None."""
    move = _factor(after) / _factor(before)
    if move > SPLIT_MOVE or move < 1.0 / SPLIT_MOVE:
        return float(Fraction(move).limit_denominator(10))
    return None


def _factor(bar: Bar) -> float:
    if bar.close > 0 and math.isfinite(bar.adj_close) and bar.adj_close > 0:
        return bar.adj_close / bar.close
    return 1.0
