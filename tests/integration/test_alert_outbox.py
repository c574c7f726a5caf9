"""Guarantee 11 in one process: fires delivered from the outbox on a real redis-server.

Each channel delivers each fire once and the history says which delivered and when; a failing
webhook (a local aiohttp server answering 500, then 200) is retried from the outbox and
delivered once; a channel failing for good is given up after its attempts without holding the
others back; two managers on one Redis deliver each fire once per channel; what a dead consumer
had taken is reclaimed. Every wait is for an event under a deadline.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.notifiers import ConsoleNotifier, Notifier, WebhookNotifier
from marketpulse.alerts.outbox import AlertOutbox
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.infra.retry import RetryPolicy
from marketpulse.market.quotes import StockData
from support.logs import LogWatch
from support.webhook import WebhookReceiver

T0 = datetime(2026, 1, 5, tzinfo=UTC)
DEADLINE = 15.0


def quote(i: int, price: float) -> StockData:
    return StockData(
        symbol="AAPL", price=price, volume=1000, timestamp=T0 + timedelta(days=i), high=price,
        low=price, open=price, close=price, previous_close=100.0, source="test",
    )  # fmt: skip


def above(threshold: float) -> AlertCondition:
    return AlertCondition(
        symbol="AAPL", alert_type=AlertType.PRICE_THRESHOLD, threshold=threshold,
        comparison="above",
    )  # fmt: skip


class Channel:
    """A channel that puts what it is sent on a queue (possibly shared by several channels)."""

    def __init__(self, name: str, q: asyncio.Queue[tuple[str, FiredAlert]] | None = None) -> None:
        self.name = name
        self.q: asyncio.Queue[tuple[str, FiredAlert]] = q if q is not None else asyncio.Queue()
        self.tag = ""

    async def send(self, alert: FiredAlert) -> None:
        self.q.put_nowait((self.tag, alert))


class Broken:
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, alert: FiredAlert) -> None:
        self.calls += 1
        raise ConnectionError("channel down for good")


def manager(redis: RedisClient, notifiers: list[Notifier], **kw: float | int) -> AlertManager:
    return AlertManager(RedisAlertStore(redis), notifiers, **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def delivering(*mgrs: AlertManager) -> AsyncIterator[None]:
    """Each manager's delivery loop runs inside the block (stopped gracefully on exit)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(m.run_deliveries(stop)) for m in mgrs]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def pending(redis: RedisClient, channel: str) -> int:
    return await AlertOutbox(redis).pending(channel)


async def test_each_channel_delivers_once_and_history_says_when(
    redis_boundary: RedisClient,
) -> None:
    a, b, out = Channel("a"), Channel("b"), io.StringIO()
    mgr = manager(redis_boundary, [a, b, ConsoleNotifier(out)])
    await mgr.add_alert(above(150))
    async with asyncio.timeout(DEADLINE), delivering(mgr):
        [fired] = await mgr.check_alerts(quote(0, 151))
        assert fired.channels == []  # decided and queued; delivered by the loop
        before = datetime.now(UTC)
        got = [await a.q.get(), await b.q.get()]
    assert [f.id for _, f in got] == [fired.id, fired.id]
    assert out.getvalue().count("ALERT AAPL") == 1
    [h] = await mgr.history()
    assert h.id == fired.id
    assert sorted(h.channels) == ["a", "b", "console"]
    assert all(
        before - timedelta(seconds=5) <= t <= datetime.now(UTC) for t in h.deliveries.values()
    )
    for channel in ("a", "b", "console"):
        assert await pending(redis_boundary, channel) == 0
    assert a.q.empty() and b.q.empty()


async def test_a_failing_webhook_is_retried_from_the_outbox_and_delivered_once(
    redis_boundary: RedisClient,
) -> None:
    async with WebhookReceiver([(500, {})]) as hook:
        webhook = WebhookNotifier(hook.url, retry=RetryPolicy(max_attempts=1))  # no retry inside
        mgr = manager(redis_boundary, [webhook], reclaim_s=0.5)
        await mgr.add_alert(above(150))
        try:
            async with asyncio.timeout(DEADLINE), delivering(mgr):
                [fired] = await mgr.check_alerts(quote(0, 151))
                assert await hook.delivered.get() == fired.id
        finally:
            await webhook.close()
    assert hook.keys == [fired.id, fired.id]  # the 500, then the retry from the outbox
    assert hook.ids == [fired.id, fired.id]
    [h] = await mgr.history()
    assert h.channels == ["webhook"]
    assert await pending(redis_boundary, "webhook") == 0


def gave_up(record: logging.LogRecord) -> bool:
    return "gave up" in record.getMessage()


async def test_a_channel_failing_for_good_is_given_up_without_blocking_the_others(
    redis_boundary: RedisClient,
) -> None:
    broken, ok = Broken(), Channel("ok")
    mgr = manager(redis_boundary, [broken, ok], reclaim_s=0.5, delivery_attempts=2)
    await mgr.add_alert(above(150))
    with LogWatch("marketpulse.alerts.delivery", logging.ERROR, gave_up) as handler:
        async with asyncio.timeout(DEADLINE), delivering(mgr):
            [fired] = await mgr.check_alerts(quote(0, 151))
            assert (await ok.q.get())[1].id == fired.id  # not held back by the broken channel
            await handler.until(lambda: bool(handler.records))
    assert broken.calls == 2  # its attempts, then given up
    assert len(handler.records) == 1 and handler.records[0].exc_info is None
    assert await pending(redis_boundary, "broken") == 0  # acknowledged once given up
    [h] = await mgr.history()
    assert h.channels == ["ok"]


async def test_two_managers_on_one_redis_deliver_each_fire_once_per_channel(
    redis_boundary: RedisClient,
) -> None:
    shared: asyncio.Queue[tuple[str, FiredAlert]] = asyncio.Queue()
    chans = [Channel("queue", shared), Channel("queue", shared)]
    for i, c in enumerate(chans):
        c.tag = f"manager {i}"
    mgrs = [manager(redis_boundary, [c]) for c in chans]
    n = 40
    for t in range(n):
        await mgrs[0].add_alert(above(float(100 + t)))
    await mgrs[1].sync()
    async with asyncio.timeout(DEADLINE), delivering(*mgrs):
        fired = await mgrs[0].check_alerts(quote(0, 99), obs=0)  # nothing
        q = quote(1, 200)
        fired += (await asyncio.gather(*(m.check_alerts(q, obs=1) for m in mgrs)))[0]
        fired += await mgrs[1].check_alerts(quote(2, 99), obs=2)
        got = [await shared.get() for _ in range(n)]
    ids = [f.id for _, f in got]
    assert len(set(ids)) == n  # each fire once on the one channel, whichever manager sent it
    assert shared.empty()
    assert await pending(redis_boundary, "queue") == 0
    tags = [t for t, _ in got]
    print(f"deliveries per manager: {sorted((t, tags.count(t)) for t in set(tags))}")
    history = await mgrs[1].history(None, 100)
    assert sorted(h.id for h in history) == sorted(ids)
    assert all(h.channels == ["queue"] for h in history)


async def test_entries_a_dead_consumer_took_are_reclaimed_and_delivered(
    redis_boundary: RedisClient, redis_client: Redis
) -> None:
    chan = Channel("queue")
    mgr = manager(redis_boundary, [chan], reclaim_s=0.5)
    await mgr.add_alert(above(150))
    [fired] = await mgr.check_alerts(quote(0, 151))
    # a consumer takes the entry and dies before delivering it
    taken: Any = await redis_client.xreadgroup(
        keys.alert_delivery_group("queue"), "dead-consumer", {keys.ALERT_OUTBOX: ">"}, count=10
    )
    assert len(taken[0][1]) == 1
    async with asyncio.timeout(DEADLINE), delivering(mgr):
        _, got = await chan.q.get()
    assert got.id == fired.id
    [h] = await mgr.history()
    assert h.channels == ["queue"]
    assert await pending(redis_boundary, "queue") == 0


async def test_a_redis_outage_logs_one_line_at_start_and_one_at_end(
    own_redis: EmbeddedRedis,
) -> None:
    client = RedisClient.from_url(own_redis.url)
    chan = Channel("queue")
    mgr = manager(client, [chan], reclaim_s=0.5)
    handler = LogWatch("marketpulse.infra.redis.outage", logging.WARNING)
    others = LogWatch("marketpulse.alerts.delivery", logging.ERROR, gave_up)  # none meanwhile
    try:
        with handler, others:
            await mgr.add_alert(above(150))
            async with asyncio.timeout(DEADLINE), delivering(mgr):
                await mgr.check_alerts(quote(0, 151))
                await chan.q.get()  # the loop runs
                own_redis.stop()
                await handler.until(lambda: len(handler.records) >= 1)
                own_redis.start()  # same port, empty
                await handler.until(lambda: len(handler.records) >= 2)
    finally:
        await client.aclose()
    lines = [r.getMessage() for r in handler.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("alert delivery: Redis at") and "unreachable" in lines[0]
    assert "answers again" in lines[1]
    assert all(r.exc_info is None for r in handler.records)
    assert others.records == []
