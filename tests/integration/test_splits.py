"""A split fires nothing false (issue 19, item 5; docs/alerts.md, Splits), on the real Redis:

- real replayed bars (AAPL's 2:1 of 2005-02-28, in the replay data itself) through the real
  monitor, fetcher and engine: the price and percentage-change alerts a halved price would fire
  fire nothing, the thresholds are re-based, a genuine post-split crossing still fires, and the
  corporate action is recorded once and published for the dashboards;
- the simulated market with a 4:1 split on its test schedule, two engines racing on every
  observation: no false fire (price below, volume spike, percentage change), the split applied
  and recorded once, the volume baseline multiplied by 4.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.http import router
from marketpulse.alerts.indicator_feed import IndicatorFeed
from marketpulse.alerts.memory_store import MemoryAlertStore
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.rules import AlertCondition, AlertType, Indicator
from marketpulse.alerts.store import AlertStore, RedisAlertStore
from marketpulse.infra.http_errors import install_error_handlers
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import ReplaySource
from marketpulse.market.providers.simulated import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.quotes import Split, StockData
from marketpulse.observability.telemetry import Telemetry
from support.asgi import with_state

FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)  # no provider rate limit in tests
SPLIT_TICK = 24  # ReplaySource("2005-01-24"): tick 24 is 2005-02-28, AAPL's 2:1 ex-date
LAST_TICK = 60


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[FiredAlert] = []

    async def send(self, alert: FiredAlert) -> None:
        self.seen.append(alert)


def cond(t: AlertType, threshold: float, comparison: str, symbol: str = "AAPL") -> AlertCondition:
    return AlertCondition(symbol=symbol, alert_type=t, threshold=threshold, comparison=comparison)


def adjusted_fires(
    src: ReplaySource, a: AlertCondition, split_tick: int, ratio: float
) -> list[int]:
    """Ticks where ``a`` becomes true on the split-adjusted series (prices from the ex-date
    multiplied back into pre-split units: what the user meant), computed from the bars."""
    out: list[int] = []
    was = False

    def price(t: int) -> float:
        return src.bar("AAPL", t).close * (ratio if t >= split_tick else 1.0)

    for t in range(1, LAST_TICK + 1):
        if a.alert_type is AlertType.PRICE_THRESHOLD:
            value = price(t)
            now = value >= a.threshold if a.comparison == "above" else value <= a.threshold
        else:
            change = 100 * (price(t) - price(t - 1)) / price(t - 1)
            now = (change if a.comparison == "above" else -change) >= a.threshold
        if now and not was:
            out.append(t)
        was = now
    return out


async def test_a_replayed_split_fires_nothing_false_and_rebases_the_thresholds(
    redis_boundary: RedisClient,
) -> None:
    src = ReplaySource(start="2005-01-24", step=1)
    assert src.bar("AAPL", SPLIT_TICK - 1).close == 88.99  # the data: halved on the ex-date
    assert src.bar("AAPL", SPLIT_TICK).close == 44.86
    clock = ManualClock(1)
    rec = Recorder()
    mgr = AlertManager(RedisAlertStore(redis_boundary), [rec])
    fetcher = DataFetcher([TickQuoteProvider(src)], clock=clock, policy=FAST)
    monitor = MonitorService(fetcher, mgr, redis=redis_boundary, clock=clock)
    below_60 = await mgr.add_alert(cond(AlertType.PRICE_THRESHOLD, 60, "below"))
    below_75 = await mgr.add_alert(cond(AlertType.PRICE_THRESHOLD, 75, "below"))
    fall_10 = await mgr.add_alert(cond(AlertType.PERCENTAGE_CHANGE, 10, "below"))
    await monitor.add_symbol("AAPL")

    async with redis_boundary.subscription(keys.QUOTE_EVENTS_ALL) as dashboards:
        for t in (1, SPLIT_TICK - 1, SPLIT_TICK, SPLIT_TICK + 3, LAST_TICK):
            clock.set(t)
            await monitor.run_once()  # every tick up to t, once, in order
        await mgr.deliver_pending()

        # what fired is what the split-adjusted series crosses: below 75 on the first day
        # (72.x), then, after re-arming above it, below 37.5 (its re-based threshold) on
        # 2005-04-14 (37.26); nothing at the split itself
        fired = sorted((f.alert_id, f.observation) for f in rec.seen)
        want = sorted(
            (a.id, t)
            for a in (below_60, below_75, fall_10)
            for t in adjusted_fires(src, a, SPLIT_TICK, 2.0)
        )
        assert fired == want == [(below_75.id, 1), (below_75.id, 56)]
        assert sorted(f.threshold for f in rec.seen) == [37.5, 75.0]
        async with asyncio.timeout(10):
            published = await dashboards.get()

    stored = {a.id: a.threshold for a in await mgr.store.all()}
    assert stored == {below_60.id: 30.0, below_75.id: 37.5, fall_10.id: 10.0}
    [action] = await mgr.splits.actions("AAPL", 10)
    assert (action.split_date, action.ratio, action.observation) == ("2005-02-28", 2.0, 24)
    assert (action.price_before, action.price_after) == (88.99, 44.86)
    assert {(r.alert_id, r.threshold_before, r.threshold_after) for r in action.rebased} == {
        (below_60.id, 60.0, 30.0),
        (below_75.id, 75.0, 37.5),
    }
    assert published is not None
    frame = json.loads(published)
    assert frame["type"] == "corporate_action"
    assert (frame["symbol"], frame["ratio"], frame["id"]) == ("AAPL", 2.0, action.id)


async def test_two_engines_racing_apply_a_simulated_split_once_and_fire_nothing(
    redis_boundary: RedisClient,
) -> None:
    split_tick, ratio = 30, 4.0
    sim = SimulatedSource(seed=42, splits={"AAPL": [(split_tick, ratio)]})
    plain = SimulatedSource(seed=42)  # the same market without the split
    provider = TickQuoteProvider(sim)
    # preconditions, from the bars: without a re-base each alert below would fire at the split
    pre, post = sim.bar("AAPL", split_tick - 1), sim.bar("AAPL", split_tick)
    assert pre.close > 100 >= post.close  # price below 100
    assert 100 * (post.close - pre.close) / pre.close <= -20  # a fall of at least 20 %
    vols = [sim.bar("AAPL", t).volume for t in range(1, split_tick + 1)]
    assert vols[-1] / (sum(vols[-21:-1]) / 20) >= 2.5  # a volume spike of 2.5
    # ... while the same market without the split crosses none of them in these ticks
    plain_vols = [plain.bar("AAPL", t).volume for t in range(1, 41)]
    assert all(v / (sum(plain_vols[i - 20 : i]) / 20) < 2.5 for i, v in enumerate(plain_vols)
               if i >= 20)  # fmt: skip

    recs = [Recorder(), Recorder()]
    mgrs = [AlertManager(RedisAlertStore(redis_boundary), [r]) for r in recs]
    below = await mgrs[0].add_alert(cond(AlertType.PRICE_THRESHOLD, 100, "below"))
    spike = await mgrs[0].add_alert(cond(AlertType.VOLUME_SPIKE, 2.5, "above"))
    fall = await mgrs[0].add_alert(cond(AlertType.PERCENTAGE_CHANGE, 20, "below"))
    await mgrs[1].sync()
    for t in range(1, 41):
        q = await provider.quote("AAPL", t)
        assert q.splits == ((Split(date=q.timestamp.date().isoformat(), ratio=ratio),)
                            if t == split_tick else q.splits)  # fmt: skip
        await asyncio.gather(*(m.check_alerts(q, obs=t) for m in mgrs))
    await asyncio.gather(*(m.deliver_pending() for m in mgrs))

    assert [r.seen for r in recs] == [[], []]
    assert await mgrs[0].history(None, 100) == []
    actions = await mgrs[1].splits.actions(None, 100)
    assert [(a.symbol, a.ratio, a.observation) for a in actions] == [("AAPL", 4.0, split_tick)]
    for m in mgrs:  # both engines evaluate with the re-based thresholds
        assert {a.id: a.threshold for a in await m.list_alerts()} == {
            below.id: 25.0, spike.id: 2.5, fall.id: 20.0,
        }  # fmt: skip
    # the volume baseline: the earlier volumes multiplied by 4, as the adjusted market shows
    window = await mgrs[0].store.volumes("AAPL", obs=41, volume=1)
    want = [round(plain.bar("AAPL", t).volume * ratio) for t in range(21, 41)]
    assert window == want


T0 = datetime(2021, 7, 15, 15, tzinfo=UTC)
FOUR = Split(date="2021-07-20", ratio=4.0)


def nvda(day: int, price: float, volume: int, *splits: Split) -> StockData:
    """NVDA on 2021-07-(15 + day) at 15:00 UTC, previous close 'as the source adjusted it'."""
    return StockData(
        symbol="NVDA", price=price, volume=volume, timestamp=T0 + timedelta(days=day),
        high=price, low=price, open=price, close=price, previous_close=price, source="test",
        splits=splits,
    )  # fmt: skip


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, redis_boundary: RedisClient) -> AlertStore:
    return RedisAlertStore(redis_boundary) if request.param == "redis" else MemoryAlertStore()


async def run_nvda(store: AlertStore, *splits: Split) -> tuple[AlertManager, list[FiredAlert]]:
    """Days 0..4 at ~750 with 1,000 shares, then day 5 (07-20) at 187 with 4,000 shares
    (carrying ``splits``), then day 6 at 186; alerts: price below 500, volume spike 2.5."""
    rec = Recorder()
    mgr = AlertManager(store, [rec])
    await mgr.add_alert(cond(AlertType.PRICE_THRESHOLD, 500, "below", "NVDA"))
    await mgr.add_alert(cond(AlertType.VOLUME_SPIKE, 2.5, "above", "NVDA"))
    for day in range(-20, 5):
        await mgr.check_alerts(nvda(day, 750 + day % 3, 1000), obs=day + 100)
    await mgr.check_alerts(nvda(5, 187.0, 4000, *splits), obs=105)
    await mgr.check_alerts(nvda(6, 186.0, 4100, *splits), obs=106)  # still reported
    await mgr.deliver_pending()
    return mgr, rec.seen


async def test_a_recorded_split_fires_nothing_on_either_store(store: AlertStore) -> None:
    mgr, fired = await run_nvda(store, FOUR)
    assert fired == []
    assert sorted(a.threshold for a in await mgr.list_alerts()) == [2.5, 125.0]
    [action] = await mgr.splits.actions("NVDA", 10)
    assert (action.ratio, action.price_before, action.price_after) == (4.0, 751.0, 187.0)
    assert await mgr.splits.actions("AAPL", 10) == []
    assert await mgr.history(None, 10) == []  # the fires' history holds fires only


@pytest.mark.parametrize(
    "splits",
    [(), (Split(date="2021-07-20", ratio=2.0),), (Split(date="2021-07-14", ratio=4.0),)],
    ids=["none-reported", "other-ratio", "before-the-earlier-observation"],
)
async def test_an_unconfirmed_jump_stays_a_price_move(
    store: AlertStore, splits: tuple[Split, ...]
) -> None:
    mgr, fired = await run_nvda(store, *splits)
    assert sorted((f.alert_type.value, f.observation) for f in fired) == [
        ("price_threshold", 105),
        ("volume_spike", 105),
    ]
    assert sorted(a.threshold for a in await mgr.list_alerts()) == [2.5, 500.0]
    assert await mgr.splits.actions(None, 10) == []


async def test_history_api_shows_the_corporate_action(redis_boundary: RedisClient) -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    mgr, _ = await run_nvda(RedisAlertStore(redis_boundary), FOUR)
    clock = ManualClock(0)
    fetcher = DataFetcher([TickQuoteProvider(SimulatedSource(seed=42))], clock=clock)
    state = {
        "alerts": mgr,
        "monitor": MonitorService(fetcher, mgr, redis=redis_boundary, clock=clock),
        "telemetry": Telemetry(),
    }
    await mgr.check_alerts(nvda(7, 120.0, 4000), obs=107)  # a fire after the split: <= 125
    transport = httpx.ASGITransport(app=with_state(app, state))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
        rows = (await api.get("/api/alerts/history", params={"symbol": "NVDA"})).json()["history"]
        limited = (await api.get("/api/alerts/history", params={"limit": 1})).json()["history"]
    assert [r["kind"] for r in rows] == ["fired", "corporate_action"]  # newest first
    assert rows[0]["threshold"] == 125.0 and rows[0]["value"] == 120.0
    action = rows[1]
    assert (action["action"], action["split_date"], action["ratio"]) == ("split", "2021-07-20", 4.0)
    assert {r["threshold_after"] for r in action["rebased"]} == {125.0}
    assert len(limited) == 1 and limited[0]["kind"] == "fired"


@pytest.mark.parametrize("added_at", [1, SPLIT_TICK + 1], ids=["book-rebased", "history-adjusted"])
async def test_a_replayed_split_moves_no_indicator(
    redis_boundary: RedisClient, added_at: int
) -> None:
    """Indicator rules across AAPL's 2:1 of 2005-02-28: a book loaded before the split is
    re-based by the split guard, one loaded after it reads a split-adjusted history
    (``indicators.split_adjusted``). AAPL's genuine 20-session drawdown stays under 35 %
    through April 2005; a halved price read as a fall would show ~50 %."""
    src = ReplaySource(start="2005-01-24", step=1)
    clock = ManualClock(1)
    rec = Recorder()
    fetcher = DataFetcher([TickQuoteProvider(src)], clock=clock, policy=FAST)
    mgr = AlertManager(
        RedisAlertStore(redis_boundary), [rec], quotes=fetcher.cache, indicators=None
    )
    mgr.use_indicators(IndicatorFeed(fetcher))
    monitor = MonitorService(fetcher, mgr, redis=redis_boundary, clock=clock)
    await monitor.add_symbol("AAPL")
    drawdown = Indicator(kind="drawdown", period=20)

    def rule(comparison: str) -> AlertCondition:
        return AlertCondition(
            symbol="AAPL",
            alert_type=AlertType.INDICATOR,
            indicator=drawdown,
            threshold=35,
            comparison=comparison,
        )

    if added_at > 1:
        clock.set(added_at)
        await monitor.run_once()
    calm = await mgr.add_alert(rule("below"))  # true from its first value: fires once
    crash = await mgr.add_alert(rule("above"))  # never genuinely true in these weeks
    for t in (SPLIT_TICK - 1, SPLIT_TICK, SPLIT_TICK + 3, LAST_TICK):
        if t > added_at:
            clock.set(t)
            await monitor.run_once()
    await mgr.deliver_pending()

    assert [f.alert_id for f in rec.seen] == [calm.id]
    assert crash.id not in {f.alert_id for f in rec.seen}
    book = mgr.indicators.book("AAPL") if isinstance(mgr.indicators, IndicatorFeed) else None
    assert book is not None
    value = book.value(drawdown)
    assert value is not None and 0 <= value < 35
