"""Rule alerts in the live engine (both stores): crossings, an indicator alert with a margin,
snooze (recorded, not delivered), an edit resetting the state, and the per-symbol map of rule
alerts and the indicator source's specs following the alerts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from marketpulse.alerts.engine import AlertManager, observation_of
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.memory_store import MemoryAlertStore
from marketpulse.alerts.rules import AlertCondition, Indicator, IndicatorValues, Outcome
from marketpulse.alerts.store import AlertStore, RedisAlertStore
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.quotes import StockData

T0 = datetime(2026, 1, 5, tzinfo=UTC)
RSI = Indicator(kind="rsi")


def quote(i: int, price: float, symbol: str = "AAPL") -> StockData:
    return StockData(
        symbol=symbol, price=price, volume=1000, timestamp=T0 + timedelta(days=i),
        high=price, low=price, open=price, close=price, previous_close=100.0, source="test",
    )  # fmt: skip


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[FiredAlert] = []

    async def send(self, alert: FiredAlert) -> None:
        self.seen.append(alert)


class Book:
    def __init__(self, rsi: float | None) -> None:
        self.rsi = rsi

    def value(self, spec: Indicator) -> float | None:
        return self.rsi if spec == RSI else None


class Source:
    """An IndicatorSource of our own: the RSI the test sets, and what the engine asked for."""

    def __init__(self) -> None:
        self.rsi: float | None = None
        self.wanted: dict[str, list[Indicator]] = {}
        self.observed = 0

    def want(self, symbol: str, specs: Sequence[Indicator]) -> None:
        self.wanted[symbol] = list(specs)

    def drop(self, symbol: str) -> None:
        self.wanted.pop(symbol, None)

    async def observe(self, quote: StockData) -> IndicatorValues | None:
        self.observed += 1
        return Book(self.rsi) if quote.symbol in self.wanted else None

    def rebase(self, symbol: str, ratio: float) -> None:
        pass  # no split in these tests


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, redis_boundary: RedisClient) -> AlertStore:
    return RedisAlertStore(redis_boundary) if request.param == "redis" else MemoryAlertStore()


async def delivered(mgr: AlertManager, rec: Recorder) -> list[FiredAlert]:
    await mgr.deliver_pending()
    return rec.seen


def alert(**kw: object) -> AlertCondition:
    data: dict[str, object] = {"symbol": "AAPL", "alert_type": "price_threshold"}
    data.update(kw)
    return AlertCondition.model_validate(data)


async def feed(mgr: AlertManager, prices: list[float], start: int = 0) -> list[int]:
    """Quotes at the given prices; the indexes of those that fired."""
    out = []
    for i, p in enumerate(prices, start):
        if await mgr.check_alerts(quote(i, p)):
            out.append(i)
    return out


async def test_a_crossing_needs_a_false_observation_first(store: AlertStore) -> None:
    mgr = AlertManager(store, [Recorder()])
    await mgr.add_alert(alert(comparison="crosses_above", threshold=150))
    assert await feed(mgr, [151, 152, 149, 151, 152, 148, 150]) == [3, 6]


async def test_an_indicator_alert_with_a_margin_fires_once_on_a_straddle(
    store: AlertStore,
) -> None:
    source = Source()
    mgr = AlertManager(store, [Recorder()], indicators=source)
    a = alert(
        alert_type="indicator", indicator={"kind": "rsi"}, comparison="below", threshold=30,
        rearm_margin=1,
    )  # fmt: skip
    await mgr.add_alert(a)
    assert source.wanted == {"AAPL": [RSI]}
    fires = []
    for i, rsi in enumerate([35, 29.9, 30.4, 29.6, 30.9, 29.8, 31.5, 29.0]):
        source.rsi = rsi
        if got := await mgr.check_alerts(quote(i, 100)):
            fires.append((i, got[0].why))
    assert fires == [(1, "RSI(14) 29.9 <= 30"), (7, "RSI(14) 29 <= 30")]
    source.rsi = None  # warm-up: no value, nothing happens
    assert await mgr.check_alerts(quote(20, 100)) == []
    await mgr.remove_alert(a.id)
    assert source.wanted == {}  # the source drops the symbol with its last indicator alert
    assert mgr._rules == {} and mgr._rule_tri == {}  # bounded by the alerts


async def test_without_an_indicator_source_an_indicator_alert_does_nothing(
    store: AlertStore,
) -> None:
    mgr = AlertManager(store, [Recorder()])
    await mgr.add_alert(alert(alert_type="indicator", indicator={"kind": "rsi"},
                              comparison="above", threshold=0))  # fmt: skip
    assert await feed(mgr, [100, 101]) == []


async def test_a_snoozed_fire_is_recorded_muted_and_never_delivered(store: AlertStore) -> None:
    rec = Recorder()
    mgr = AlertManager(store, [rec])
    until = T0 + timedelta(days=2, hours=12)
    a = await mgr.add_alert(alert(comparison="above", threshold=150, snoozed_until=until))
    assert await feed(mgr, [151, 149, 151, 149, 151]) == [0, 2, 4]
    history = await mgr.history("AAPL")
    assert [f.muted for f in reversed(history)] == [True, True, False]
    assert [f.observation for f in await delivered(mgr, rec)] == [
        h.observation for h in history if not h.muted
    ]
    # ending the snooze keeps the state (disarmed after the last fire)
    await mgr.snooze(a.id, None)
    assert await feed(mgr, [152], start=5) == []


async def test_an_edit_resets_the_state(store: AlertStore) -> None:
    mgr = AlertManager(store, [Recorder()])
    a = await mgr.add_alert(alert(comparison="crosses_above", threshold=150))
    assert await feed(mgr, [149, 151]) == [1]
    assert await mgr.edit_alert(a.model_copy(update={"threshold": 140.0}))
    # edited: disarmed again, so still above 140 fires nothing until seen below it
    assert await feed(mgr, [152, 139, 141], start=2) == [4]
    assert not await mgr.edit_alert(alert(id="nope", comparison="above", threshold=1))


async def test_all_of_fires_when_every_clause_holds_together(store: AlertStore) -> None:
    source = Source()
    mgr = AlertManager(store, [Recorder()], indicators=source)
    await mgr.add_alert(
        alert(
            alert_type="all_of", comparison="above",
            all_of=[
                {"alert_type": "price_threshold", "comparison": "above", "threshold": 2800},
                {"alert_type": "indicator", "indicator": {"kind": "rsi"},
                 "comparison": "above", "threshold": 70},
            ],
        )
    )  # fmt: skip
    got = []
    for i, (price, rsi) in enumerate([(2810, 60), (2790, 71), (2810, 71.2), (2820, 72)]):
        source.rsi = rsi
        got += [(i, f.why) for f in await mgr.check_alerts(quote(i, price))]
    assert got == [(2, "price 2810 >= 2800 and RSI(14) 71.2 >= 70")]


async def test_after_forget_every_rule_alert_is_applied_again(store: AlertStore) -> None:
    mgr = AlertManager(store, [Recorder()])
    a = await mgr.add_alert(alert(comparison="above", threshold=150, rearm_margin=5))
    assert await feed(mgr, [151]) == [0]
    # meanwhile (another poller) the alert went false beyond the margin and re-armed
    obs = observation_of(quote(1, 140))
    assert await store.apply(a, obs=obs, truth=False, at=0.0, fired=None) is Outcome.REARMED
    mgr.forget()
    assert await feed(mgr, [152], start=2) == [2]  # this instance re-applies its truth
