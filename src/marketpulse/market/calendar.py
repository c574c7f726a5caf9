"""Exchange calendars: whether a symbol's exchange is open at an instant, and which trading
session a quote at that instant belongs to (a model: the instant is always an argument).

Library: ``pandas_market_calendars`` for both exchanges. It has a curated NSE calendar
(holidays and Muhurat sessions from NSE's circulars); ``exchange_calendars`` has XNYS but for
India only BSE (XBOM), and BSE's list is not NSE's. One library for both keeps one source of
truth for hours, half days and holidays.

Which calendar a symbol follows (``exchange_of``): ``.NS`` and ``.BO`` → ``NSE`` (BSE keeps NSE's
hours and holidays); a plain ticker (``AAPL``, ``BRK-B``) and the US indices (``^GSPC``,
``^DJI``, ``^IXIC``, ``^RUT``, ``^VIX``) → ``XNYS`` (NYSE and NASDAQ share hours and holidays);
``^NSEI``, ``^NSEBANK``, ``^BSESN`` → ``NSE``. Everything else has no calendar and counts as
always open: FX pairs (``USDINR=X``: the FX market trades around the clock on weekdays, and
polling it through the weekend costs two days a week), futures (``=F``), crypto
(``BTC-USD``), other exchanges' suffixes (``.L``, ``.T``, ...) and other indices. A symbol we
cannot place is polled as before, never missed.

Guarantees:

- ``ExchangeCalendar.state(now)`` answers for an aware instant: open or not, the session date a
  quote at ``now`` belongs to (the session under way, else the last one that has opened), the
  close of that session, the next open, and ``estimated``.
- Horizon: the library's last listed holiday of the exchange (NSE: 2026-12-25) is its horizon.
  Days after it are sessions on weekdays at the regular hours minus the ``holidays`` package's
  financial-holiday estimate of the exchange (``XNSE``), each flagged ``estimated``; an answer
  that uses one (or is given for an instant past the horizon) is ``estimated``. The first
  answer for an instant past the horizon logs one WARNING per calendar, never more.
- Overrides (``calendar_overrides.json`` beside this module, each entry with its reason and
  source) win over both: ``closed`` drops a session, ``session`` adds or replaces one (a
  weekend Muhurat session, which the library cannot represent).
- The schedule is built once per (exchange, year) and kept for at most ``max_years`` years per
  calendar (least recently used first out): pandas is never called per poll.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from importlib import resources
from typing import Any, Literal
from zoneinfo import ZoneInfo

import holidays
import pandas_market_calendars as mcal

log = logging.getLogger(__name__)

NSE, XNYS = "NSE", "XNYS"
FALLBACK_MARKET = {NSE: "XNSE", XNYS: "XNYS"}  # the holidays package's names of the exchanges
NSE_SUFFIXES = (".NS", ".BO")
US_INDICES = frozenset({"^GSPC", "^DJI", "^IXIC", "^RUT", "^VIX", "^NDX"})
NSE_INDICES = frozenset({"^NSEI", "^NSEBANK", "^BSESN"})
OVERRIDES_FILE = "calendar_overrides.json"


def exchange_of(symbol: str) -> str | None:
    """The calendar ``symbol`` (upper-cased) follows, or None: always open (see the module)."""
    if symbol.endswith(NSE_SUFFIXES) or symbol in NSE_INDICES:
        return NSE
    if symbol in US_INDICES:
        return XNYS
    if any(c in symbol for c in ".=^") or symbol.endswith(("-USD", "-USDT", "-EUR", "-INR")):
        return None  # another exchange's suffix, FX, futures, other indices, crypto
    return XNYS


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session: its exchange-local date and its open and close (aware, UTC)."""

    day: date
    open: datetime
    close: datetime
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class MarketState:
    """An exchange at one instant (``ExchangeCalendar.state``)."""

    exchange: str
    is_open: bool
    session_date: date | None  # the session a quote now belongs to (None: none ever opened)
    last_open: datetime | None  # that session's open
    last_close: datetime | None  # that session's close (in the future while it is open)
    next_open: datetime | None  # the first open after now (None: none in the next years)
    estimated: bool


@dataclass(frozen=True, slots=True)
class Override:
    """A correction to the library: ``closed`` drops the day's session; ``session`` adds or
    replaces it with ``open``-``close`` in the exchange's local time."""

    day: date
    kind: Literal["closed", "session"]
    reason: str
    source: str
    open: time | None = None
    close: time | None = None


def parse_overrides(data: Mapping[str, Any]) -> dict[str, tuple[Override, ...]]:
    """Overrides per exchange from the JSON shape of ``calendar_overrides.json``:
    ``{"NSE": {"closed": [{"date", "reason", "source"}], "sessions": [{"date", "open",
    "close", "reason", "source"}]}}``. Raises ``ValueError`` for a malformed entry (an
    override without its reason and source is refused)."""
    out: dict[str, tuple[Override, ...]] = {}
    for exchange, body in data.items():
        if exchange.startswith("_"):
            continue  # "_comment" and the like
        found: list[Override] = []
        for entry in body.get("closed", []):
            found.append(Override(_day(entry), "closed", _text(entry, "reason"),
                                  _text(entry, "source")))  # fmt: skip
        for entry in body.get("sessions", []):
            opens, closes = time.fromisoformat(entry["open"]), time.fromisoformat(entry["close"])
            if closes <= opens:
                raise ValueError(f"{exchange} {entry['date']}: the close is not after the open")
            found.append(Override(_day(entry), "session", _text(entry, "reason"),
                                  _text(entry, "source"), opens, closes))  # fmt: skip
        out[exchange] = tuple(found)
    return out


def _day(entry: Mapping[str, Any]) -> date:
    return date.fromisoformat(entry["date"])


def _text(entry: Mapping[str, Any], name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"override {entry.get('date')}: {name!r} is required")
    return value


def load_overrides() -> dict[str, tuple[Override, ...]]:
    """The overrides shipped with the package (``calendar_overrides.json``)."""
    text = resources.files(__package__).joinpath(OVERRIDES_FILE).read_text(encoding="utf-8")
    return parse_overrides(json.loads(text))


@dataclass(frozen=True, slots=True)
class _Year:
    sessions: tuple[Session, ...]  # ordered by open
    opens: tuple[datetime, ...]
    days: tuple[date, ...]


class ExchangeCalendar:
    """One exchange's sessions from the library, past its horizon from the ``holidays``
    estimate, with the overrides applied (see the module docstring for the guarantees)."""

    def __init__(
        self, name: str, *, overrides: Iterable[Override] = (), max_years: int = 4
    ) -> None:
        self.name = name
        self._lib: Any = mcal.get_calendar(name)
        self.tz = ZoneInfo(str(self._lib.tz))
        listed = self._lib.holidays().holidays
        self.horizon: date = listed[-1].astype("datetime64[D]").item()
        self._fallback = FALLBACK_MARKET.get(name, name)
        self._overrides = {o.day: o for o in overrides}
        self._years: OrderedDict[int, _Year] = OrderedDict()
        self._max_years = max(2, max_years)  # a query may look at two neighbouring years
        self._warned = False

    def state(self, now: datetime) -> MarketState:
        """The exchange at ``now`` (aware); raises ``ValueError`` for a naive datetime."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        last, upcoming = self._last_started(now), self._next_after(now)
        past = now.astimezone(self.tz).date() > self.horizon
        if past and not self._warned:
            self._warned = True
            log.warning(
                "%s calendar: the library lists closures only until %s; sessions after it "
                "are estimated from the holidays package (%s)",
                self.name, self.horizon, self._fallback,
            )  # fmt: skip
        estimated = past or any(s is not None and s.estimated for s in (last, upcoming))
        return MarketState(
            exchange=self.name,
            is_open=last is not None and now < last.close,
            session_date=last.day if last else None,
            last_open=last.open if last else None,
            last_close=last.close if last else None,
            next_open=upcoming.open if upcoming else None,
            estimated=estimated,
        )

    def is_open(self, now: datetime) -> bool:
        return self.state(now).is_open

    def session_date(self, now: datetime) -> date | None:
        """The session a quote at ``now`` belongs to: the one under way, else the last one."""
        return self.state(now).session_date

    def next_open(self, now: datetime) -> datetime | None:
        return self.state(now).next_open

    def previous_session(self, day: date) -> Session | None:
        """The last session on a date before ``day``."""
        for year in (day.year, day.year - 1):
            known = self._year(year)
            i = bisect_left(known.days, day)
            if i:
                return known.sessions[i - 1]
        return None

    def _last_started(self, now: datetime) -> Session | None:
        for year in (now.year, now.year - 1):
            known = self._year(year)
            i = bisect_right(known.opens, now)
            if i:
                return known.sessions[i - 1]
        return None

    def _next_after(self, now: datetime) -> Session | None:
        for year in (now.year, now.year + 1):
            known = self._year(year)
            i = bisect_right(known.opens, now)
            if i < len(known.sessions):
                return known.sessions[i]
        return None

    def _year(self, year: int) -> _Year:
        known = self._years.get(year)
        if known is not None:
            self._years.move_to_end(year)
            return known
        known = self._build(year)
        self._years[year] = known
        while len(self._years) > self._max_years:
            self._years.popitem(last=False)
        return known

    def _build(self, year: int) -> _Year:
        """The year's sessions: the library's schedule, estimated past the horizon, overridden."""
        first, last = date(year, 1, 1), date(year, 12, 31)
        frame = self._lib.schedule(start_date=first.isoformat(), end_date=last.isoformat())
        guessed: set[date] = set()
        if last > self.horizon:
            guessed = set(holidays.financial_holidays(self._fallback, years=year))
        by_day: dict[date, Session] = {}
        for stamp, opens, closes in zip(
            frame.index, frame["market_open"], frame["market_close"], strict=True
        ):
            day = stamp.date()
            estimated = day > self.horizon
            if estimated and day in guessed:
                continue
            by_day[day] = Session(day, opens.to_pydatetime(), closes.to_pydatetime(), estimated)
        for override in self._overrides.values():
            if override.day.year != year:
                continue
            if override.kind == "closed":
                by_day.pop(override.day, None)
            elif override.open is not None and override.close is not None:
                by_day[override.day] = Session(
                    override.day,
                    datetime.combine(override.day, override.open, self.tz).astimezone(UTC),
                    datetime.combine(override.day, override.close, self.tz).astimezone(UTC),
                )
        sessions = tuple(sorted(by_day.values(), key=lambda s: s.open))
        return _Year(sessions, tuple(s.open for s in sessions), tuple(s.day for s in sessions))


class Calendars:
    """The calendars of every exchange a symbol can follow, each built on first use."""

    def __init__(
        self,
        overrides: Mapping[str, Sequence[Override]] | None = None,
        *,
        max_years: int = 4,
    ) -> None:
        self._overrides = load_overrides() if overrides is None else dict(overrides)
        self._max_years = max_years
        self._calendars: dict[str, ExchangeCalendar] = {}

    def calendar(self, exchange: str) -> ExchangeCalendar:
        found = self._calendars.get(exchange)
        if found is None:
            found = ExchangeCalendar(
                exchange, overrides=self._overrides.get(exchange, ()), max_years=self._max_years
            )
            self._calendars[exchange] = found
        return found

    def for_symbol(self, symbol: str) -> ExchangeCalendar | None:
        exchange = exchange_of(symbol)
        return None if exchange is None else self.calendar(exchange)

    def state(self, symbol: str, now: datetime) -> MarketState | None:
        """The symbol's exchange at ``now``; None when the symbol has no calendar."""
        calendar = self.for_symbol(symbol)
        return None if calendar is None else calendar.state(now)
