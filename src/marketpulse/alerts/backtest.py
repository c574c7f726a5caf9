"""The backtest: a dry run of one alert rule over the symbols' daily history (issue 19).

``Backtester(feed, calendars).run(rule, symbols, start, end)`` replays each symbol's daily bars
from ``QuoteFeed.history`` through exactly what the live monitor runs, and touches no store:

- each bar becomes the quote a tick provider makes of it (``quote_of_bar``,
  ``market/providers/tick_provider.py``: price = close, previous close = the bar before);
- a quote that is not ``usable`` is not an observation (as in ``AlertManager.check_alerts``);
- the volume window is the previous ``VOLUME_WINDOW`` observations' volumes (the current one
  not in the mean), seeded with the bars before ``start``: as a monitor that watched the
  symbol before the range;
- indicators come from an ``IndicatorBook`` built as ``IndicatorFeed`` builds it: the
  ``history_bars(specs) - 1`` closes before the first session of the range, then each quote
  as its session's bar (``session_of``);
- ``rules.evaluate`` and ``rules.transition`` decide, from ``initial_state(rule)`` (a
  crossing starts disarmed), with the rule's cooldown, expiry and snooze; a fire is the
  ``FiredAlert`` the engine would record (its value, values, why and quote).

So a backtest of a window equals what the monitor fires when the window is replayed
(tests/integration/test_backtest_property.py).

It answers per symbol: the fires (time, value, quote, why; ``muted`` when snoozed), their
count, the time in the true state (sessions, and seconds: an observation's truth holds until
the next observation, the last one's until the end of the range's last day, or of the
history's when it ends first), and what was
suppressed: a fire inside the cooldown, a bar on a day the exchange calendar
(``market/calendar.py``) says is not a session (not observed at all, as the live fetcher
makes no observation while the exchange is closed), a fire muted by the snooze. An alert that
expires stops there (the live engine deletes it).

Bounds: 1..``MAX_SYMBOLS`` symbols; a range over ``MAX_RANGE_DAYS`` days is cut to its last
``MAX_RANGE_DAYS`` (the answer's ``clamped`` and ``start`` say so); at most ``MAX_LISTED``
fires and cooldown suppressions and closed days listed per symbol (the counts are always
exact; ``truncated`` says a list was cut); histories of at most ``MAX_BARS`` bars. A range in
which a symbol has no history (or an empty range) raises ``NotReplayable`` (409
``history_not_covered``, naming the dates the history has); a range reaching past the
history is replayed where they overlap.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.indicator_feed import history_bars, session_of
from marketpulse.alerts.indicators import IndicatorBook, split_adjusted, split_between
from marketpulse.alerts.rules import (
    VOLUME_WINDOW,
    AlertCondition,
    Outcome,
    evaluate,
    initial_state,
    transition,
    usable,
)
from marketpulse.alerts.splits import confirm, quote_day, rebased, rebased_quote
from marketpulse.errors import (
    MarketPulseError,
    NotReplayable,
    QuoteUnavailable,
    ValidationFailed,
)
from marketpulse.market.calendar import Calendars, ExchangeCalendar
from marketpulse.market.ports import QuoteFeed
from marketpulse.market.providers.tick_provider import quote_of_bar
from marketpulse.market.quotes import Bar, Split, StockData
from marketpulse.market.symbols import check_symbol

MAX_SYMBOLS = 50
MAX_RANGE_DAYS = 3 * 366  # three years of calendar days
MAX_LISTED = 250  # fires, and suppressions of each kind, listed per symbol
MAX_BARS = 4_000  # bars asked of a history (the range, its warm-up, up to the source's now)
SOURCE = "backtest"  # the quotes' source: replayed history, not a live provider
CONCURRENCY = 8  # histories fetched at once
SESSION_YEARS = 64  # (exchange, year) session sets a Backtester keeps (~2 KB each)


def _epoch(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


class _Out(BaseModel):
    """An answer's model: a field it does not declare is an error, not dropped."""

    model_config = ConfigDict(extra="forbid")


class BacktestQuote(_Out):
    """The quote a decision rests on: the bar's close as a quote (``quote_of_bar``)."""

    price: float = Field(description="the observed price: the daily bar's close")
    volume: int = Field(description="the bar's volume")
    timestamp: datetime = Field(description="the bar's day, 00:00 UTC (market time)")
    previous_close: float | None = Field(
        description="the previous session's close (None for a first bar)"
    )

    @classmethod
    def of(cls, quote: StockData) -> BacktestQuote:
        return cls(
            price=quote.price,
            volume=quote.volume,
            timestamp=quote.timestamp,
            previous_close=quote.previous_close,
        )


class BacktestPoint(_Out):
    """One observation's price (the symbol's chart)."""

    time: datetime = Field(description="market time of the observation (the bar's day)")
    price: float = Field(description="the observed price (the bar's close)")


class BacktestFire(_Out):
    """One fire the rule would have made: what the live engine records in its history."""

    time: datetime = Field(description="market time of the observation that fired")
    value: float | None = Field(description="the observed value (None for an all_of)")
    values: dict[str, float | None] = Field(
        description="each observed value by label (an all_of's clauses, e.g. 'RSI(14)')"
    )
    why: str = Field(description="the readable reason, e.g. 'RSI(14) 71.2 >= 70'")
    muted: bool = Field(description="fired while snoozed: recorded, not delivered")
    quote: BacktestQuote = Field(description="the quote it fired on")


class BacktestSuppression(_Out):
    """A fire the cooldown suppressed: the condition became true inside it."""

    time: datetime = Field(description="market time of the observation")
    value: float | None = Field(description="the observed value (None for an all_of)")
    quote: BacktestQuote = Field(description="the quote of that observation")


class BacktestSuppressed(_Out):
    """What did not fire, and why."""

    cooldown_count: int = Field(description="crossings inside the cooldown (all of them)")
    cooldown: list[BacktestSuppression] = Field(
        description=f"those crossings, the first {MAX_LISTED}"
    )
    closed_market_count: int = Field(
        description="bars of the range on days the exchange calendar has no session: not observed"
    )
    closed_market: list[str] = Field(
        description=f"their dates (YYYY-MM-DD), the first {MAX_LISTED}"
    )
    snoozed_count: int = Field(description="fires muted by the snooze (listed among the fires)")


class BacktestHistory(_Out):
    """The daily history the source had for the symbol."""

    first: str | None = Field(description="its first bar's date (YYYY-MM-DD)")
    last: str | None = Field(description="its last bar's date: a range past it is cut there")
    warmup_bars: int = Field(
        description="session bars before the range: the volume window, the indicators' "
        "seed and the first previous close come from them"
    )


class TimeTrue(_Out):
    """Time in the true state: an observation's truth holds until the next observation (the
    last one's until the end of the range's last day)."""

    sessions: int = Field(description="observations at which the condition held")
    seconds: float = Field(description="seconds the condition held")


class BacktestSymbol(_Out):
    """The dry run of the rule on one symbol."""

    symbol: str = Field(description="the symbol")
    history: BacktestHistory = Field(description="the history replayed")
    observations: int = Field(description="quotes observed in the range (sessions)")
    evaluated: int = Field(
        description="observations with a value (none during warm-up or without a baseline)"
    )
    fire_count: int = Field(description="fires, muted ones included (all of them)")
    muted_count: int = Field(description="fires muted by the snooze")
    time_true: TimeTrue = Field(description="time spent in the true state")
    fires: list[BacktestFire] = Field(
        description=f"the fires, oldest first, the first {MAX_LISTED}"
    )
    prices: list[BacktestPoint] = Field(
        description="every observation's price, oldest first (the chart the fires are drawn "
        f"on; at most the sessions of {MAX_RANGE_DAYS} days)"
    )
    suppressed: BacktestSuppressed = Field(description="what was suppressed")
    expired_at: datetime | None = Field(
        description="the observation at which the rule expired (it stops there), else None"
    )
    truncated: bool = Field(description=f"a list was cut at {MAX_LISTED} (the counts are exact)")


class BacktestResult(_Out):
    """``POST /api/alerts/backtest``: the rule's dry run on each symbol."""

    rule: dict[str, Any] = Field(description="the rule replayed (as an alert's JSON)")
    start: date = Field(description="the first day replayed")
    end: date = Field(description="the last day replayed")
    requested_start: date = Field(description="the start asked for")
    clamped: bool = Field(
        description=f"the range was longer than {MAX_RANGE_DAYS} days: its last "
        f"{MAX_RANGE_DAYS} were replayed (start says from when)"
    )
    fire_count: int = Field(description="fires over every symbol")
    symbols: list[BacktestSymbol] = Field(description="per symbol, in the order asked")


@dataclass(slots=True)
class SymbolResult:
    """One symbol's dry run as it is made (``result()`` gives the answer)."""

    symbol: str
    history_first: str | None = None
    history_last: str | None = None
    warmup: int = 0
    observations: int = 0
    evaluated: int = 0  # observations with a value (after warm-up)
    sessions_true: int = 0
    seconds_true: float = 0.0
    fires: list[FiredAlert] = field(default_factory=list)
    fire_count: int = 0
    muted_count: int = 0
    cooldown: list[BacktestSuppression] = field(default_factory=list)
    cooldown_count: int = 0
    closed: list[str] = field(default_factory=list)
    closed_count: int = 0
    expired_at: datetime | None = None
    prices: list[BacktestPoint] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return (
            self.fire_count > len(self.fires)
            or self.cooldown_count > len(self.cooldown)
            or self.closed_count > len(self.closed)
        )

    def result(self) -> BacktestSymbol:
        return BacktestSymbol(
            symbol=self.symbol,
            history=BacktestHistory(
                first=self.history_first, last=self.history_last, warmup_bars=self.warmup
            ),
            observations=self.observations,
            evaluated=self.evaluated,
            fire_count=self.fire_count,
            muted_count=self.muted_count,
            time_true=TimeTrue(sessions=self.sessions_true, seconds=self.seconds_true),
            fires=[
                BacktestFire(
                    time=f.fired_at,
                    value=f.value,
                    values=f.values,
                    why=f.why,
                    muted=f.muted,
                    quote=BacktestQuote(
                        price=f.quote.price,
                        volume=f.quote.volume,
                        timestamp=f.quote.timestamp,
                        previous_close=f.quote.previous_close,
                    ),
                )
                for f in self.fires
            ],
            prices=self.prices,
            suppressed=BacktestSuppressed(
                cooldown_count=self.cooldown_count,
                cooldown=self.cooldown,
                closed_market_count=self.closed_count,
                closed_market=self.closed,
                snoozed_count=self.muted_count,
            ),
            expired_at=self.expired_at,
            truncated=self.truncated,
        )


def bounded_range(start: date, end: date) -> tuple[date, bool]:
    """The start actually replayed, and whether the range was cut to its last
    ``MAX_RANGE_DAYS`` days. Raises ``NotReplayable`` for an empty range (end before
    start): no history lies in it."""
    if end < start:
        raise NotReplayable(
            f"the range {start}..{end} is empty (end before start): no session lies in it"
        )
    if (end - start).days > MAX_RANGE_DAYS:
        return end - timedelta(days=MAX_RANGE_DAYS), True
    return start, False


def warmup_bars(rule: AlertCondition) -> int:
    """Bars needed before the range: the volume window, the first previous close, and the
    closes an ``IndicatorFeed`` would load for the rule's indicators."""
    specs = rule.indicators()
    return max(VOLUME_WINDOW, 1, history_bars(specs) - 1 if specs else 0)


def replay(
    rule: AlertCondition,
    symbol: str,
    bars: Sequence[Bar],
    start: date,
    end: date,
    *,
    is_session: Callable[[date], bool] | None = None,
) -> SymbolResult:
    """The dry run of ``rule`` on ``symbol`` over ``bars`` (oldest first: the warm-up, then
    the range ``start``..``end``); ``is_session(day) -> bool`` (None: every bar is one).
    Pure: the same bars give the same answer."""
    alert = rule.model_copy(update={"symbol": symbol}) if rule.symbol != symbol else rule
    out = SymbolResult(symbol)
    if bars:
        out.history_first, out.history_last = bars[0].date, bars[-1].date
    warm, inside = _split(bars, start.isoformat(), end.isoformat(), is_session, out)
    run = _Run(alert, warm, out)
    for bar in inside:
        if not run.step(bar):
            break
    # a truth holds to the end of the range's last day, or of the history's when it ends first
    last_day = min(end, date.fromisoformat(bars[-1].date) if bars else end)
    last_day = min(last_day, date.max - timedelta(days=1))
    run.finish(datetime.combine(last_day + timedelta(days=1), time(), UTC).timestamp())
    return out


def _split(
    bars: Sequence[Bar],
    lo: str,
    hi: str,
    is_session: Callable[[date], bool] | None,
    out: SymbolResult,
) -> tuple[list[Bar], list[Bar]]:
    """The session bars before ``lo`` (the warm-up) and in ``lo``..``hi``; a bar of the range
    on a day that is no session is counted as suppressed (closed market) and not observed."""
    warm: list[Bar] = []
    inside: list[Bar] = []
    for bar in bars:
        if bar.date > hi:
            break
        if is_session is not None and not is_session(date.fromisoformat(bar.date)):
            if bar.date >= lo:
                out.closed_count += 1
                if len(out.closed) < MAX_LISTED:
                    out.closed.append(bar.date)
            continue
        (warm if bar.date < lo else inside).append(bar)
    return warm, inside


class _Run:
    """One rule on one symbol, observation by observation: what ``check_alerts`` does to a
    quote, with the state in memory instead of the store."""

    def __init__(self, alert: AlertCondition, warm: list[Bar], out: SymbolResult) -> None:
        self.alert, self.out = alert, out
        out.warmup = len(warm)
        self.specs = alert.indicators()
        self.warm = warm
        self.book: IndicatorBook | None = None  # loaded at the first observation (_load_book)
        self.volumes: deque[int] = deque(
            (b.volume for b in warm[-VOLUME_WINDOW:]), maxlen=VOLUME_WINDOW
        )
        self.previous: float | None = warm[-1].close if warm else None
        self.previous_bar: Bar | None = warm[-1] if warm else None
        self.previous_day: str | None = None  # the last observation's day (a split's jump)
        self.state = initial_state(alert)
        self.expires_at = _epoch(alert.expires_at)
        self.snoozed_until = _epoch(alert.snoozed_until)
        self.true_since: float | None = None  # the time of a true observation, until the next
        self.last_price: float | None = None  # the last observation's price (a split's jump)

    def step(self, bar: Bar) -> bool:
        """Observe ``bar``; False once the alert expired (the live engine deletes it)."""
        out = self.out
        ratio = None if self.previous_bar is None else split_between(self.previous_bar, bar)
        reported = (Split(date=bar.date, ratio=ratio),) if ratio is not None else ()
        quote = quote_of_bar(
            out.symbol, bar, self.previous, source=SOURCE, currency="USD", splits=reported
        )
        self.previous, self.previous_bar = bar.close, bar
        if not usable(quote):
            return True  # not an observation
        quote = self._split(quote)
        self.previous_day = quote_day(quote)
        out.observations += 1
        out.prices.append(BacktestPoint(time=quote.timestamp, price=quote.price))
        at = quote.timestamp.timestamp()
        if self.true_since is not None:  # the previous observation's truth held until now
            out.seconds_true += at - self.true_since
            self.true_since = None
        prior = list(self.volumes)
        self.volumes.append(quote.volume)
        if self.specs:
            if self.book is None:
                self.book = self._load_book(bar)
            self.book.observe(session_of(quote), quote.price)
        ev = evaluate(self.alert, quote, volumes=prior, indicators=self.book)
        if ev is None:
            return True  # no value (warm-up, no baseline): nothing happens
        out.evaluated += 1
        if ev.truth:
            out.sessions_true += 1
            self.true_since = at
        obs = int(at * 1_000_000)
        self.state, outcome = transition(
            self.state,
            obs=obs,
            at=at,
            cooldown_s=self.alert.cooldown_s,
            expires_at=self.expires_at,
            ev=ev,
            snoozed_until=self.snoozed_until,
        )
        if outcome is Outcome.FIRED:
            muted = self.state.muted
            out.fire_count += 1
            out.muted_count += muted
            if len(out.fires) < MAX_LISTED:
                out.fires.append(
                    FiredAlert.of(self.alert, ev.value, quote, obs, ev=ev, muted=muted)
                )
        elif outcome is Outcome.SUPPRESSED:
            out.cooldown_count += 1
            if len(out.cooldown) < MAX_LISTED:
                out.cooldown.append(
                    BacktestSuppression(
                        time=quote.timestamp, value=ev.value, quote=BacktestQuote.of(quote)
                    )
                )
        elif outcome is Outcome.EXPIRED:
            out.expired_at = quote.timestamp
            self.true_since = None
            return False
        return True

    def _load_book(self, bar: Bar) -> IndicatorBook:
        """The book as ``IndicatorFeed`` loads it at the first quote it sees: the closes before
        the quote's session, split-adjusted to that session's bar."""
        keep = history_bars(self.specs) - 1
        closes = split_adjusted([*self.warm, bar], bar.date)
        return IndicatorBook(closes[-keep:], specs=self.specs)

    def _split(self, quote: StockData) -> StockData:
        """What the live split guard does before a quote is evaluated (``split_guard.py``): a
        split the quote reports and its jump confirms re-bases the rule, the volume window and
        the indicator book, and the quote's pre-split previous close."""
        split = confirm(quote, self.last_price, self.previous_day)
        self.last_price = quote.price
        if split is None:
            return quote
        self.alert = rebased(self.alert, split.ratio) or self.alert
        scaled = (math.floor(v * split.ratio + 0.5) for v in self.volumes)  # as split_apply.lua
        self.volumes = deque(scaled, maxlen=VOLUME_WINDOW)
        if self.book is not None:
            self.book.rebase(split.ratio)
        return rebased_quote(quote, split)

    def finish(self, end_of_range: float) -> None:
        if self.true_since is not None:
            self.out.seconds_true += max(0.0, end_of_range - self.true_since)


class Backtester:
    """Dry runs of alert rules on ``feed``'s daily history (never the alert store)."""

    def __init__(self, feed: QuoteFeed, calendars: Calendars | None = None) -> None:
        self.feed = feed
        self.calendars = calendars if calendars is not None else Calendars()
        # (exchange, year) -> its session days, least recently used first out
        self._years: OrderedDict[tuple[str, int], frozenset[date]] = OrderedDict()
        self._calendar_lock = threading.Lock()  # the calendars are built off the event loop

    def _sessions(self, calendar: ExchangeCalendar, year: int) -> frozenset[date]:
        """The session days of ``calendar``'s ``year``, computed once (day by day, in order:
        the calendar builds each year's schedule once) and kept for ``SESSION_YEARS``."""
        key = (calendar.name, year)
        found = self._years.get(key)
        if found is not None:
            self._years.move_to_end(key)
            return found
        days: set[date] = set()
        day = date(year, 1, 1)
        while day.year == year and day < date.max:
            after = day + timedelta(days=1)
            session = calendar.previous_session(after)
            if session is not None and session.day == day:
                days.add(day)
            day = after
        made = self._years[key] = frozenset(days)
        while len(self._years) > SESSION_YEARS:
            self._years.popitem(last=False)
        return made

    def session_test(self, symbol: str, years: Sequence[int] = ()) -> Callable[[date], bool] | None:
        """Whether a day is a session of ``symbol``'s exchange (None: no calendar, every day
        is one). The session days of ``years`` are made now (the answer then reads no calendar
        for them: it is safe on another thread), other years' when first asked. Building a
        calendar (pandas) takes a while: ``run`` calls this in a worker thread."""
        with self._calendar_lock:
            calendar = self.calendars.for_symbol(symbol)
            if calendar is None:
                return None
            known = {year: self._sessions(calendar, year) for year in years}

        def is_session(day: date) -> bool:
            days = known.get(day.year)
            if days is None:
                with self._calendar_lock:
                    days = known[day.year] = self._sessions(calendar, day.year)
            return day in days

        return is_session

    async def run(
        self, rule: AlertCondition, symbols: Sequence[str] | None, start: date, end: date
    ) -> BacktestResult:
        """The dry run of ``rule`` on ``symbols`` (default: the rule's) over ``start``..``end``
        (cut to its last ``MAX_RANGE_DAYS`` days). Raises ``ValidationFailed`` (symbols) or
        ``NotReplayable`` (a range in which a symbol has no history, or none at all)."""
        first_day, clamped = bounded_range(start, end)
        names = list(dict.fromkeys(check_symbol(s) for s in (symbols or [rule.symbol])))
        if not 1 <= len(names) <= MAX_SYMBOLS:
            raise ValidationFailed(f"a backtest takes 1 to {MAX_SYMBOLS} symbols, got {len(names)}")
        warm = warmup_bars(rule)
        n = min(MAX_BARS, warm + _business_days(first_day, datetime.now(UTC).date()))
        gate = asyncio.Semaphore(CONCURRENCY)

        async def fetch(symbol: str) -> list[Bar]:
            async with gate:
                try:
                    bars = await self.feed.history(symbol, n)
                except QuoteUnavailable as exc:
                    raise NotReplayable(exc.message) from exc
            _check_cover(symbol, bars, first_day, end)
            return bars

        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(fetch(s)) for s in names]
        except* MarketPulseError as group:
            raise _first(group) from None
        results: list[BacktestSymbol] = []
        for symbol, task in zip(names, tasks, strict=True):
            bars = task.result()
            years = range(int(bars[0].date[:4]), int(bars[-1].date[:4]) + 1)
            is_session = await asyncio.to_thread(self.session_test, symbol, years)
            done = replay(rule, symbol, bars, first_day, end, is_session=is_session)
            results.append(done.result())
            await asyncio.sleep(0)  # one symbol at a time: the loop stays responsive
        return BacktestResult(
            rule=rule.model_dump(mode="json"),
            start=first_day,
            end=end,
            requested_start=start,
            clamped=clamped,
            fire_count=sum(r.fire_count for r in results),
            symbols=results,
        )


def _first(group: BaseExceptionGroup[MarketPulseError]) -> MarketPulseError:
    """The first error of a group (the one a person reads)."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, MarketPulseError)
    return exc


def _business_days(start: date, today: date) -> int:
    days = max(0, (today - start).days)
    return math.ceil(days * 5 / 7) + 5


def _check_cover(symbol: str, bars: Sequence[Bar], start: date, end: date) -> None:
    """Raises ``NotReplayable`` unless ``bars`` hold a day of ``start``..``end``, naming
    what they hold. A range reaching past the history is replayed where they overlap (the
    answer's ``history`` says what was had)."""
    if not bars:
        raise NotReplayable(f"no daily history for {symbol}")
    first, last = bars[0].date, bars[-1].date
    if last < start.isoformat() or first > end.isoformat():
        raise NotReplayable(
            f"{symbol}: the history has {len(bars)} daily bars from {first} to {last}; "
            f"the range {start}..{end} holds none of them"
        )
