"""The monitor makes no live provider call for a closed exchange, and exactly one after each
close for the closing print (market/fetcher.py, with market/calendar.py).

A manual wall clock walks the monitor through the week of 2026-11-23 (UTC) in 15-minute
steps: NSE closed on Tuesday 24 November (Guru Nanak Jayanti), NYSE closed on Thursday 26
(Thanksgiving) and closing at 13:00 New York on Friday 27, then the weekend. The provider is
a counting fake of our own; there is no cache, so every poll of an open exchange is a call.
The expected sessions are written out here, not asked of the calendar.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.rules import AlertCondition, AlertType, observed_value
from marketpulse.market.calendar import Calendars
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.quotes import StockData
from support.fakes import CountingLive, ManualWall, Queued

START = datetime(2026, 11, 23, tzinfo=UTC)  # Monday
END = datetime(2026, 12, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
DELAY = timedelta(seconds=FetchPolicy().closing_print_delay_s)  # 5 minutes: within a STEP


def at(day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 11, day, hh, mm, tzinfo=UTC)


def session_list(times: dict[int, tuple[str, str]]) -> list[tuple[datetime, datetime]]:
    out = []
    for day, (opens, closes) in sorted(times.items()):
        oh, om = map(int, opens.split(":"))
        ch, cm = map(int, closes.split(":"))
        out.append((at(day, oh, om), at(day, ch, cm)))
    return out


NYSE = session_list(
    {
        23: ("14:30", "21:00"),
        24: ("14:30", "21:00"),
        25: ("14:30", "21:00"),
        27: ("14:30", "18:00"),
        30: ("14:30", "21:00"),
    }
)
NSE = session_list({d: ("03:45", "10:00") for d in (23, 25, 26, 27, 30)})


def is_open(sessions: list[tuple[datetime, datetime]], when: datetime) -> bool:
    return any(o <= when < c for o, c in sessions)


def closed_spells(sessions: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The closed intervals of the walk: before the first open, between sessions, after."""
    edges = [START] + [t for s in sessions for t in s] + [END]
    return [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]


def monitor_for(
    wall: ManualWall, provider: CountingLive, on_quote: Callable[[StockData], None]
) -> MonitorService:
    fetcher = DataFetcher(
        [provider],
        policy=FetchPolicy(rate_per_s=1e9, burst=1_000_000),
        wall=wall.now,
        calendars=Calendars(),
    )
    alerts = AlertManager.in_memory(notifiers=[Queued()])
    return MonitorService(fetcher, alerts, interval_s=5.0, on_quote=on_quote)


@pytest.fixture(scope="module")
async def week() -> tuple[CountingLive, dict[str, list[StockData]]]:
    wall = ManualWall(START)
    provider = CountingLive(wall)
    seen: dict[str, list[StockData]] = {"AAPL": [], "TCS.NS": []}
    monitor = monitor_for(wall, provider, lambda q: seen[q.symbol].append(q))
    for symbol in seen:
        await monitor.add_symbol(symbol)
    while wall.utc() < END:
        await monitor.run_once()
        wall.advance(STEP.total_seconds())
    return provider, seen


@pytest.mark.parametrize(("symbol", "sessions"), [("AAPL", NYSE), ("TCS.NS", NSE)])
async def test_no_call_while_closed_but_one_after_each_close(
    week: tuple[CountingLive, dict[str, list[StockData]]],
    symbol: str,
    sessions: list[tuple[datetime, datetime]],
) -> None:
    provider, _ = week
    calls = provider.calls_of(symbol)
    for start, end in closed_spells(sessions):
        inside = [c for c in calls if start <= c < end]
        # the first quote at once; a closing print once the closing price had DELAY to settle
        due = start if start == START else start + STEP  # the first step at close + DELAY
        assert inside == [due], f"{symbol} closed {start}..{end}: calls {inside}"
    steps_open = 0
    t = START
    while t < END:
        steps_open += is_open(sessions, t)
        t += STEP
    assert len(calls) == steps_open + len(closed_spells(sessions))


async def test_quotes_say_whether_the_market_is_open_and_their_session(
    week: tuple[CountingLive, dict[str, list[StockData]]],
) -> None:
    _, seen = week
    live = [q for q in seen["AAPL"] if q.market_open]
    assert live and all(q.next_open is None and q.age_s == 0 for q in live)
    after = [q for q in seen["AAPL"] if q.market_open is False and q.session_date == "2026-11-27"]
    settling, closing = after[0], after[1]
    assert settling.timestamp == at(27, 17, 45)  # at the close: the session's last quote
    assert closing.timestamp == at(27, 18, 15)  # the one poll after the half day's close
    assert all(q.timestamp == closing.timestamp for q in after[1:])  # no newer quote made up
    assert len(after) > 200  # served through the weekend
    assert all(q.next_open == at(30, 14, 30) for q in after)
    assert all(not q.stale and not q.estimated for q in after)
    holiday = [q for q in seen["TCS.NS"] if q.session_date == "2026-11-23" and not q.market_open]
    assert sorted({q.timestamp for q in holiday}) == [at(23, 9, 45), at(23, 10, 15)]


async def test_a_closed_day_does_not_move_the_percentage_change_reference() -> None:
    """The quotes served while closed are the closing print itself: same price, same previous
    close, same observation, so a change alert neither fires again nor re-arms."""
    wall = ManualWall(at(27, 17, 30))  # Friday, half an hour before the 13:00 close
    provider = CountingLive(wall, previous=100.0)
    seen: list[StockData] = []
    monitor = monitor_for(wall, provider, seen.append)
    await monitor.add_symbol("AAPL")
    alert = AlertCondition(symbol="AAPL", alert_type=AlertType.PERCENTAGE_CHANGE,
                           threshold=0.05, comparison="above")  # fmt: skip
    await monitor.alerts.add_alert(alert)
    await monitor.run_once()  # in session: +0.1 %, fires
    wall.set(at(27, 18) + timedelta(seconds=5))
    await monitor.run_once()  # closed, the closing price still settling: the last quote
    wall.set(at(27, 18) + DELAY)
    await monitor.run_once()  # the closing print: +0.2 %
    for hours in (1, 10, 30, 50):  # Friday evening, Saturday, Sunday
        wall.set(at(27, 18) + timedelta(hours=hours))
        await monitor.run_once()
    assert len(provider.calls) == 2
    assert seen[1].timestamp == seen[0].timestamp and seen[1].market_open is False
    closing, served = seen[2], seen[3:]
    assert all(q.previous_close == closing.previous_close == 100.0 for q in served)
    assert all(q.price == closing.price and q.timestamp == closing.timestamp for q in served)
    change = observed_value(AlertType.PERCENTAGE_CHANGE, closing)
    assert all(observed_value(AlertType.PERCENTAGE_CHANGE, q) == change for q in served)
    history = await monitor.alerts.history(limit=10)
    assert len(history) == 1


async def test_a_tick_market_keeps_its_own_clock_and_is_never_gated() -> None:
    wall = ManualWall(at(28, 12))  # Saturday: a live market would be closed
    fetcher = DataFetcher([TickQuoteProvider(SimulatedSource(seed=1))], wall=wall.now)
    assert fetcher.calendars is None
    quotes = [await fetcher.fetch_stock_data("AAPL", tick=t) for t in range(3)]
    assert len({q.price for q in quotes}) > 1  # three ticks, three prices
    assert all(q.market_open is None and q.session_date is None for q in quotes)


async def test_a_symbol_without_a_calendar_is_always_polled() -> None:
    wall = ManualWall(at(28, 12))  # Saturday
    provider = CountingLive(wall)
    fetcher = DataFetcher([provider], wall=wall.now, calendars=Calendars())
    for _ in range(3):
        quote = await fetcher.fetch_stock_data("USDINR=X")
    assert len(provider.calls) == 3
    assert quote.market_open is None


async def test_without_calendars_every_poll_is_a_call() -> None:
    wall = ManualWall(at(28, 12))  # Saturday
    provider = CountingLive(wall)
    fetcher = DataFetcher([provider], wall=wall.now)  # given providers: no calendars unless asked
    for _ in range(3):
        await fetcher.fetch_stock_data("AAPL")
    assert len(provider.calls) == 3
