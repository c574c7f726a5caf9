"""The monitor as a service: dynamic symbols, restart, graceful shutdown, the lease, racing."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.clock import ManualClock
from marketpulse.market.events import RedisQuotePublisher
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.quotes import StockData
from support.fakes import Queued

FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)  # no provider rate limit in tests


class Gate:
    """A notifier that blocks until released; tells when a delivery started."""

    name = "gate"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = 0
        self.cancelled = 0

    async def send(self, alert: FiredAlert) -> None:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1


def service(
    redis: RedisClient, clock: ManualClock, notifiers: list[object], **kw: object
) -> MonitorService:
    fetcher = DataFetcher([TickQuoteProvider(SimulatedSource(seed=42))], clock=clock, policy=FAST)
    mgr = AlertManager(RedisAlertStore(redis), notifiers)  # type: ignore[arg-type]
    return MonitorService(fetcher, mgr, redis=redis, clock=clock, interval_s=0.01, **kw)  # type: ignore[arg-type]


def always(symbol: str) -> AlertCondition:
    """True at any price: fires on the first observation of the symbol."""
    return AlertCondition(
        symbol=symbol, alert_type=AlertType.PRICE_THRESHOLD, threshold=0, comparison="above"
    )


async def test_symbols_added_and_removed_while_running(redis_boundary: RedisClient) -> None:
    clock, note = ManualClock(5), Queued()
    seen: asyncio.Queue[StockData] = asyncio.Queue()
    mon = service(redis_boundary, clock, [note], on_quote=seen.put_nowait)
    await mon.alerts.add_alert(always("TCS.NS"))
    await mon.add_symbol("AAPL")
    stop = asyncio.Event()
    async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
        tg.create_task(mon.run(stop))
        tg.create_task(mon.alerts.run_deliveries(stop))  # the fires go out through the outbox
        assert (await seen.get()).symbol == "AAPL"
        assert await mon.add_symbol("tcs.ns")
        clock.advance()
        fired = await note.q.get()
        assert (fired.symbol, fired.observation) == ("TCS.NS", 6)
        assert await mon.remove_symbol("TCS.NS")
        stop.set()
    assert await mon.symbols() == ["AAPL"]


async def test_removed_symbol_is_not_evaluated_at_later_ticks(redis_boundary: RedisClient) -> None:
    clock = ManualClock(5)
    seen: list[tuple[str, int]] = []
    mon = service(
        redis_boundary,
        clock,
        [],
        on_quote=lambda q: seen.append((q.symbol, q.timestamp.toordinal())),
    )
    for s in ("AAPL", "MSFT"):
        await mon.add_symbol(s)
    assert await mon.run_once() == 2
    await mon.remove_symbol("MSFT")
    clock.advance(3)
    assert await mon.run_once() == 3
    assert sorted(s for s, _ in seen[:2]) == ["AAPL", "MSFT"]
    assert [s for s, _ in seen[2:]] == ["AAPL"] * 3


async def test_symbols_and_alerts_survive_a_restart(redis_boundary: RedisClient) -> None:
    clock = ManualClock(5)
    first = service(redis_boundary, clock, [])
    await first.add_symbol("INFY.NS")
    await first.alerts.add_alert(always("INFY.NS"))
    note = Queued()
    second = service(redis_boundary, clock, [note])
    assert await second.symbols() == ["INFY.NS"]
    assert await second.run_once() == 1
    await second.alerts.deliver_pending()
    assert (await note.q.get()).symbol == "INFY.NS"


async def test_graceful_shutdown_finishes_in_flight_notifications(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    """On Redis the notification in flight is the delivery loop's: it finishes on stop."""
    gate = Gate()
    mon = service(redis_boundary, ManualClock(3), [gate], shutdown_s=30)
    await mon.add_symbol("AAPL")
    await mon.alerts.add_alert(always("AAPL"))
    stop = asyncio.Event()
    before = asyncio.all_tasks()
    async with asyncio.timeout(10):
        runner = asyncio.create_task(mon.run(stop))
        deliveries = asyncio.create_task(mon.alerts.run_deliveries(stop))
        await gate.started.wait()
        stop.set()
        gate.release.set()
        await runner
        await deliveries
    assert gate.finished == 1
    [h] = await mon.alerts.history()
    assert h.channels == ["gate"]  # delivered and acknowledged before the loop ended
    assert gate.cancelled == 0
    assert asyncio.all_tasks() - before == set()
    assert await redis_client.get("mp:lease:monitor") is None  # released


async def test_shutdown_is_bounded_when_a_notification_hangs(redis_boundary: RedisClient) -> None:
    gate = Gate()
    mon = service(redis_boundary, ManualClock(3), [gate], shutdown_s=0.2)
    assert mon.alerts.delivery is not None
    mon.alerts.delivery.shutdown_s = 0.2
    await mon.add_symbol("AAPL")
    await mon.alerts.add_alert(always("AAPL"))
    stop = asyncio.Event()
    before = asyncio.all_tasks()
    async with asyncio.timeout(10):
        runner = asyncio.create_task(mon.run(stop))
        deliveries = asyncio.create_task(mon.alerts.run_deliveries(stop))
        await gate.started.wait()
        stop.set()
        await runner
        await deliveries
    assert gate.cancelled == 1
    assert await mon.alerts.delivery.outbox.pending("gate") == 1  # left for another consumer
    assert asyncio.all_tasks() - before == set()


async def test_one_poller_at_a_time_and_handover_continues_from_the_cursor(
    redis_boundary: RedisClient,
) -> None:
    clock = ManualClock(10)
    notes = [Queued(), Queued()]
    a = service(redis_boundary, clock, [notes[0]])
    b = service(redis_boundary, clock, [notes[1]])
    await a.add_symbol("AAPL")
    await a.alerts.add_alert(always("AAPL"))
    counts = await asyncio.gather(a.run_once(), b.run_once())
    assert sorted(counts) == [0, 1]
    assert await a.holds_lease() != await b.holds_lease()
    owner, other = (a, b) if counts[0] else (b, a)
    await owner.release_lease()
    clock.advance(4)
    assert await other.run_once() == 4  # ticks 11..14, continuing after the owner's tick 10
    assert await owner.run_once() == 0


async def test_two_monitors_racing_without_the_lease_never_double_fire(
    redis_boundary: RedisClient,
) -> None:
    clock = ManualClock(0)
    notes = [Queued(), Queued()]
    mons = [service(redis_boundary, clock, [n], lease_ms=1) for n in notes]
    thresholds = [float(t) for t in range(120, 160, 2)]
    for t in thresholds:
        await mons[0].alerts.add_alert(
            AlertCondition(
                symbol="AAPL", alert_type=AlertType.PRICE_THRESHOLD, threshold=t, comparison="above"
            )
        )
    await mons[0].add_symbol("AAPL")
    for m in mons:  # each instance evaluates every tick itself, as if the lease had lapsed
        m.holds_lease = _always_true  # type: ignore[method-assign]
    for tick in range(0, 80):
        clock.set(tick)
        await asyncio.gather(*(m.run_once() for m in mons))
    await asyncio.gather(*(m.alerts.deliver_pending() for m in mons))
    fired = [n.q.get_nowait() for n in notes for _ in range(n.q.qsize())]
    src = SimulatedSource(42)
    expected = []
    for t in thresholds:
        was = False
        for tick in range(0, 80):
            now = src.bar("AAPL", tick).close >= t
            if now and not was:
                expected.append((t, tick))
            was = now
    assert sorted((f.threshold, f.observation) for f in fired) == sorted(expected)


async def _always_true() -> bool:
    return True


class Published:
    """The monitor's quote publisher port, recording; ``broken`` makes every publish fail."""

    def __init__(self, broken: bool = False) -> None:
        self.quotes: list[StockData] = []
        self.broken = broken

    async def publish(self, quote: StockData) -> None:
        if self.broken:
            raise RedisUnavailable("publish refused")
        self.quotes.append(quote)


async def test_every_observed_quote_is_published_once(redis_boundary: RedisClient) -> None:
    clock, pub = ManualClock(5), Published()
    mon = service(redis_boundary, clock, [], publisher=pub)
    for s in ("AAPL", "MSFT"):
        await mon.add_symbol(s)
    assert await mon.run_once() == 2
    clock.advance(2)  # two ticks behind: both are observed, in order
    assert await mon.run_once() == 4
    got = sorted((q.symbol, q.timestamp) for q in pub.quotes)
    assert len(got) == len(set(got)) == 6
    aapl = [q.timestamp for q in pub.quotes if q.symbol == "AAPL"]
    assert aapl == sorted(aapl)


async def test_a_failing_publisher_does_not_stop_the_alerts(redis_boundary: RedisClient) -> None:
    note = Queued()
    mon = service(redis_boundary, ManualClock(5), [note], publisher=Published(broken=True))
    await mon.alerts.add_alert(always("AAPL"))
    await mon.add_symbol("AAPL")
    assert await mon.run_once() == 1
    await mon.alerts.deliver_pending()
    assert (await note.q.get()).symbol == "AAPL"


async def test_the_redis_publisher_sends_dashboard_quote_frames(
    redis_client: Redis, redis_boundary: RedisClient
) -> None:
    clock = ManualClock(5)
    mon = service(redis_boundary, clock, [], publisher=RedisQuotePublisher(redis_boundary))
    await mon.add_symbol("AAPL")
    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(keys.QUOTE_EVENTS_ALL)
        async with asyncio.timeout(5):
            assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
            await mon.run_once()
            msg = await pubsub.get_message(timeout=5)
    frame = json.loads(msg["data"])
    assert frame["type"] == "quote" and frame["symbol"] == "AAPL" and frame["price"] > 0
    assert (
        StockData.model_validate({k: v for k, v in frame.items() if k != "type"}).symbol == "AAPL"
    )
