"""The alert engine on both stores (real Redis and memory): firing, history, racing instances,
a failing notifier. On Redis the fires are delivered from the outbox: these tests deliver with
``deliver_pending()`` (a no-op in memory, where delivery is inline); the loop itself is tested
in ``test_alert_outbox.py``."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta

import pytest

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.memory_store import MemoryAlertStore
from marketpulse.alerts.notifiers import ConsoleNotifier, RedisPublishNotifier
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.store import AlertStore, RedisAlertStore
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.quotes import StockData

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def quote(
    i: int, price: float, volume: int = 1000, symbol: str = "AAPL", **kw: object
) -> StockData:
    return StockData(
        symbol=symbol, price=price, volume=volume, timestamp=T0 + timedelta(days=i),
        high=price, low=price, open=price, close=price, previous_close=100.0, source="test",
        **kw,
    )  # fmt: skip


class Recorder:
    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.seen: list[FiredAlert] = []

    async def send(self, alert: FiredAlert) -> None:
        self.seen.append(alert)


class Broken:
    name = "broken"

    async def send(self, alert: FiredAlert) -> None:
        raise ConnectionError("channel down")


class Hanging:
    name = "hanging"

    async def send(self, alert: FiredAlert) -> None:
        await asyncio.Event().wait()


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, redis_boundary: RedisClient) -> AlertStore:
    return RedisAlertStore(redis_boundary) if request.param == "redis" else MemoryAlertStore()


def above(
    threshold: float, t: AlertType = AlertType.PRICE_THRESHOLD, **kw: object
) -> AlertCondition:
    return AlertCondition(
        symbol="AAPL", alert_type=t, threshold=threshold, comparison="above", **kw
    )


async def test_fires_once_per_crossing_and_records_history(store: AlertStore) -> None:
    rec = Recorder()
    mgr = AlertManager(store, [rec])
    a = await mgr.add_alert(above(150))
    prices = [140, 151, 152, 149, 150, 150, 160, 140, 155]
    fired = [len(await mgr.check_alerts(quote(i, p))) for i, p in enumerate(prices)]
    assert fired == [0, 1, 0, 0, 1, 0, 0, 0, 1]
    assert not mgr._locks and not mgr._lock_users  # no lock kept for a symbol between quotes
    await mgr.deliver_pending()
    hist = await mgr.history("AAPL", 10)
    assert [h.quote.price for h in hist] == [155, 150, 151]  # newest first
    assert all(h.alert_id == a.id and h.channels == ["recorder"] for h in hist)
    assert await mgr.history("MSFT", 10) == []


async def test_stale_and_insane_quotes_never_fire_or_change_state(store: AlertStore) -> None:
    mgr = AlertManager(store, [Recorder()])
    await mgr.add_alert(above(150))
    assert await mgr.check_alerts(quote(0, 151, stale=True, age_s=900)) == []
    assert await mgr.check_alerts(quote(1, 151).model_copy(update={"low": 200.0})) == []
    assert len(await mgr.check_alerts(quote(2, 151))) == 1


async def test_volume_spike_waits_for_twenty_observations(store: AlertStore) -> None:
    mgr = AlertManager(store, [Recorder()])
    await mgr.add_alert(above(3, AlertType.VOLUME_SPIKE))
    for i in range(20):
        assert await mgr.check_alerts(quote(i, 100, volume=10_000)) == []  # no baseline yet
    [f] = await mgr.check_alerts(quote(20, 100, volume=30_000))
    assert f.value == pytest.approx(3.0)


async def test_expired_alert_is_removed_without_firing(store: AlertStore) -> None:
    mgr = AlertManager(store, [Recorder()])
    await mgr.add_alert(above(150, expires_at=T0 + timedelta(days=1)))
    assert await mgr.check_alerts(quote(1, 151)) == []
    assert await mgr.list_alerts() == []


async def test_a_failing_or_hanging_notifier_does_not_block_the_others(store: AlertStore) -> None:
    out = io.StringIO()
    rec = Recorder()
    mgr = AlertManager(
        store, [Broken(), Hanging(), ConsoleNotifier(out), rec], notify_timeout_s=0.2
    )
    await mgr.add_alert(above(150))
    async with asyncio.timeout(5):
        [f] = await mgr.check_alerts(quote(0, 151))
        await mgr.deliver_pending()
    assert len(rec.seen) == 1
    assert out.getvalue().count("\n") == 1
    assert out.getvalue().startswith("ALERT AAPL price_threshold above 150")
    [h] = await mgr.history(None, 5)
    assert h.id == f.id
    assert sorted(h.channels) == ["console", "recorder"]
    assert sorted(h.deliveries) == ["console", "recorder"]


async def test_two_instances_racing_on_one_redis_fire_each_crossing_once(
    redis_boundary: RedisClient,
) -> None:
    recs = [Recorder(), Recorder()]
    mgrs = [AlertManager(RedisAlertStore(redis_boundary), [r]) for r in recs]
    alerts = [await mgrs[0].add_alert(above(float(t))) for t in range(100, 200, 5)]
    await mgrs[1].sync()
    prices = [90, 150, 120, 199, 100, 180, 110, 210]
    for i, p in enumerate(prices):
        q = quote(i, p)
        await asyncio.gather(mgrs[0].check_alerts(q, obs=i), mgrs[1].check_alerts(q, obs=i))
    await asyncio.gather(*(m.deliver_pending() for m in mgrs))  # one channel: one group
    got = sorted((f.alert_id, f.observation) for r in recs for f in r.seen)
    expected = []
    for a in alerts:
        was = False
        for i, p in enumerate(prices):
            now = p >= a.threshold
            if now and not was:
                expected.append((a.id, i))
            was = now
    assert got == sorted(expected)
    assert len(await mgrs[0].history(None, 1000)) == len(expected)


class Counts:
    """The engine's telemetry port, counting (we own this fake)."""

    def __init__(self) -> None:
        self.evaluated = 0
        self.fired = 0

    def alert_evaluated(self, n: int = 1) -> None:
        self.evaluated += n

    def alert_fired(self, n: int = 1) -> None:
        self.fired += n


async def test_telemetry_counts_evaluations_and_each_fire_once_across_instances(
    redis_boundary: RedisClient,
) -> None:
    counts = [Counts(), Counts()]
    mgrs = [
        AlertManager(RedisAlertStore(redis_boundary), [Recorder()], telemetry=c) for c in counts
    ]
    for t in (100, 150, 200):
        await mgrs[0].add_alert(above(float(t)))
    await mgrs[0].add_alert(above(1, AlertType.PERCENTAGE_CHANGE))
    await mgrs[0].add_alert(above(3, AlertType.VOLUME_SPIKE))  # no baseline: not evaluated
    await mgrs[1].sync()
    prices = [90, 160, 120, 210, 95]
    for i, p in enumerate(prices):
        q = quote(i, p, symbol="AAPL")
        await asyncio.gather(*(m.check_alerts(q, obs=i) for m in mgrs))
        await asyncio.gather(*(m.check_alerts(quote(i, p, symbol="MSFT"), obs=i) for m in mgrs))
    assert [c.evaluated for c in counts] == [len(prices) * 4] * 2  # 3 price + 1 % change
    # crossings: >=100 at 160; >=150 at 160 and 210; >=200 at 210; % change >=1 at 160
    assert sum(c.fired for c in counts) == 5
    assert len(await mgrs[0].history(None, 100)) == 5


async def test_sync_picks_up_alerts_from_another_instance(redis_boundary: RedisClient) -> None:
    one, two = (
        AlertManager(RedisAlertStore(redis_boundary), []),
        AlertManager(RedisAlertStore(redis_boundary), []),
    )
    a = await one.add_alert(above(150))
    assert [x.id for x in await two.list_alerts()] == [a.id]
    assert await one.remove_alert(a.id)
    assert await two.list_alerts() == []


async def test_subscribers_receive_fired_alerts_over_redis(redis_boundary: RedisClient) -> None:
    mgr = AlertManager(RedisAlertStore(redis_boundary), [RedisPublishNotifier(redis_boundary)])
    await mgr.add_alert(above(150))
    async with mgr.subscribe() as events:
        await mgr.check_alerts(quote(0, 151))
        async with asyncio.timeout(5):
            await mgr.deliver_pending()
            msg = await anext(events)
    assert FiredAlert.model_validate_json(msg).symbol == "AAPL"


async def test_concurrent_checks_of_a_symbol_share_its_lock_then_drop_it(
    store: AlertStore,
) -> None:
    mgr = AlertManager(store, [Recorder()])
    await mgr.add_alert(above(150))
    fired = await asyncio.gather(*(mgr.check_alerts(quote(i, 140 + 5 * i)) for i in range(6)))
    assert sum(len(f) for f in fired) == 1  # 140 .. 165, one crossing, decided under one lock
    assert not mgr._locks and not mgr._lock_users
