"""Named channels on the outbox, on a real redis-server: a fire goes to the channels its alert
names and to no other; a fire decided before a channel's row existed is not its; quiet hours
hold fires (acknowledged, not dropped) and release them when they end, as one digest; "back to
normal" reaches only the channels that asked; a channel whose receiver hangs delays no other.
Every wait is for an event or a call's return under a deadline; clocks are ours (manual)."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta

import pytest

from marketpulse.alerts.channel_delivery import ChannelDeliveries, ChannelDelivery
from marketpulse.alerts.channel_service import ChannelService
from marketpulse.alerts.channel_store import RedisChannelStore
from marketpulse.alerts.channels import Channel, Message
from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.notifiers import ConsoleNotifier
from marketpulse.alerts.outbox import AlertOutbox
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.senders import AppriseSender, Sender, SmtpConfig, sender_for
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.quotes import StockData
from support.channel_receivers import JsonReceiver, key_of

DEADLINE = 15.0
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def quote(i: int, price: float) -> StockData:
    return StockData(
        symbol="AAPL", price=price, volume=1000, timestamp=T0 + timedelta(days=i), high=price,
        low=price, open=price, close=price, previous_close=100.0, source="test",
    )  # fmt: skip


def above(threshold: float, channels: tuple[str, ...] | None) -> AlertCondition:
    return AlertCondition(
        symbol="AAPL", alert_type=AlertType.PRICE_THRESHOLD, threshold=threshold,
        comparison="above", channels=channels,
    )  # fmt: skip


class Recorder:
    """A sender of ours that keeps what it is sent."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def channel(redis: RedisClient, row: Channel) -> None:
    assert await RedisChannelStore(redis).put(row, create=True, cap=0) == "ok"


def delivery(
    redis: RedisClient, row: Channel, sender: Sender, now: Clock | None = None
) -> ChannelDelivery:
    return ChannelDelivery(
        AlertOutbox(redis), RedisChannelStore(redis), row, sender, reclaim_s=2.0,
        max_attempts=3, notify_timeout_s=1.0, now=now or Clock(datetime.now(UTC)),
    )  # fmt: skip


def hook(name: str, **kw: object) -> Channel:
    return Channel.model_validate(
        {"name": name, "kind": "webhook", "target": "https://hooks.example.com/x", **kw}
    )


@pytest.fixture
async def manager(redis_boundary: RedisClient) -> AlertManager:
    mgr = AlertManager(RedisAlertStore(redis_boundary), [ConsoleNotifier(io.StringIO())])
    await mgr.deliver_pending()  # the built-in groups exist before a fire (as in the app)
    return mgr


async def test_a_fire_goes_to_the_channels_its_alert_names_and_no_other(
    redis_boundary: RedisClient, manager: AlertManager
) -> None:
    tg, other = Recorder(), Recorder()
    await channel(redis_boundary, hook("tg"))
    await channel(redis_boundary, hook("other"))
    await manager.add_alert(above(150, ("tg", "console")))
    [fired] = await manager.check_alerts(quote(0, 151))
    async with asyncio.timeout(DEADLINE):
        assert await delivery(redis_boundary, hook("tg"), tg).run_once() == 1
        assert await delivery(redis_boundary, hook("other"), other).run_once() == 0
        assert await manager.deliver_pending() == 1  # the console
    assert [m.key for m in tg.sent] == [fired.id] and other.sent == []
    assert key_of(tg.sent[0].body) == fired.id
    [h] = await manager.history()
    assert sorted(h.channels) == ["console", "tg"]
    outbox = AlertOutbox(redis_boundary)
    assert await outbox.pending("other") == 0  # acknowledged unsent


async def test_an_alert_naming_no_channel_goes_to_the_built_in_ones_only(
    redis_boundary: RedisClient, manager: AlertManager
) -> None:
    tg = Recorder()
    await channel(redis_boundary, hook("tg"))
    await manager.add_alert(above(150, None))
    await manager.check_alerts(quote(0, 151))
    async with asyncio.timeout(DEADLINE):
        assert await manager.deliver_pending() == 1
        assert await delivery(redis_boundary, hook("tg"), tg).run_once() == 0
    assert tg.sent == []


async def test_a_fire_decided_before_the_channels_row_is_not_its(
    redis_boundary: RedisClient, manager: AlertManager
) -> None:
    tg = Recorder()
    await manager.add_alert(above(150, ("tg",)))
    await manager.check_alerts(quote(0, 151))  # fires: no row "tg" yet
    await channel(redis_boundary, hook("tg"))
    await manager.check_alerts(quote(1, 149))  # re-arms
    [later] = await manager.check_alerts(quote(2, 152))
    async with asyncio.timeout(DEADLINE):
        assert await delivery(redis_boundary, hook("tg"), tg).run_once() == 1
    assert [m.key for m in tg.sent] == [later.id]


async def test_quiet_hours_hold_fires_and_release_them_as_one_digest(
    redis_boundary: RedisClient, manager: AlertManager
) -> None:
    row = hook("night", quiet_hours={"start": "22:00", "end": "07:00", "tz": "UTC"}, digest=True)
    await channel(redis_boundary, row)
    clock = Clock(datetime(2026, 1, 5, 22, 30, tzinfo=UTC))
    sent = Recorder()
    night = delivery(redis_boundary, row, sent, clock)
    for i in range(3):
        await manager.add_alert(above(150, ("night",)).model_copy(update={"id": f"a{i}"}))
    fires = await manager.check_alerts(quote(0, 151))
    assert len(fires) == 3
    async with asyncio.timeout(DEADLINE):
        assert await night.run_once() == 0  # nothing sent ...
        assert night.held_count == 3  # ... all held
        assert await AlertOutbox(redis_boundary).pending("night") == 0  # and acknowledged
        assert await night.release_held() == 0  # still quiet
        clock.now = datetime(2026, 1, 6, 7, 0, tzinfo=UTC)  # the quiet hours end
        assert await night.release_held() == 3
        assert await night.release_held() == 0  # released once
    [digest] = sent.sent
    assert digest.kind == "digest" and digest.title.startswith("marketpulse: fired 3 times since")
    assert {f.id for f in digest.fires} == {f.id for f in fires}
    assert key_of(digest.body) == digest.key
    for h in await manager.history():
        assert "night" in h.deliveries  # recorded as delivered when released
    assert not await redis_boundary.call("EXISTS", keys.channel_held("night"))


async def test_back_to_normal_reaches_only_the_channels_that_asked(
    redis_boundary: RedisClient, manager: AlertManager
) -> None:
    store = RedisChannelStore(redis_boundary)
    service = ChannelService(
        store, lambda c: sender_for(c, SmtpConfig(), timeout_s=1), max_channels=10
    )
    manager.on_rearmed = service.cleared
    asks, quiet = hook("asks", back_to_normal=True), hook("plain")
    await service.create(asks)
    await service.create(quiet)
    await manager.add_alert(above(150, ("asks", "plain")))
    [fired] = await manager.check_alerts(quote(0, 151))
    await manager.check_alerts(quote(1, 149))  # the condition clears: re-armed
    got_asks, got_plain = Recorder(), Recorder()
    async with asyncio.timeout(DEADLINE):
        assert await delivery(redis_boundary, asks, got_asks).run_once() == 2
        assert await delivery(redis_boundary, quiet, got_plain).run_once() == 1
        assert await manager.deliver_pending() == 0  # the console is not named
    assert [m.kind for m in got_asks.sent] == ["fired", "cleared"]
    assert got_asks.sent[0].key == fired.id and "no longer true" in got_asks.sent[1].body
    assert [m.kind for m in got_plain.sent] == ["fired"]


async def test_a_channel_whose_receiver_hangs_delays_no_other(
    redis_boundary: RedisClient, manager: AlertManager
) -> None:
    hang, good = JsonReceiver(hold=True), JsonReceiver()
    hang_url, good_url = await hang.start(), await good.start()
    rows = {
        "hang": Channel(name="hang", kind="apprise", target=hang_url),
        "good": Channel(name="good", kind="apprise", target=good_url),
    }
    store = RedisChannelStore(redis_boundary)
    for row in rows.values():
        assert await store.put(row, create=True, cap=0) == "ok"
    deliveries = ChannelDeliveries(
        AlertOutbox(redis_boundary), store, lambda c: AppriseSender(str(c.target), []),
        reclaim_s=60.0, max_attempts=3, notify_timeout_s=30.0, refresh_s=0.2,
    )  # fmt: skip
    for i in range(3):
        await manager.add_alert(above(150, ("hang", "good")).model_copy(update={"id": f"h{i}"}))
    fires = await manager.check_alerts(quote(0, 151))
    stop = asyncio.Event()
    task = asyncio.create_task(deliveries.run(stop))
    try:
        async with asyncio.timeout(DEADLINE):
            first_hung = await hang.received.get()  # the hanging channel took one and hangs
            got = [await good.answered.get() for _ in fires]  # the other delivers all
        assert hang.answered.empty()  # still hanging when the other had delivered every fire
        assert {key_of(b["message"]) for b in got} == {f.id for f in fires}
        assert key_of(first_hung["message"]) in {f.id for f in fires}
    finally:
        stop.set()
        await hang.aclose()
        await good.aclose()
        await task


async def test_in_memory_an_alert_goes_to_the_notifiers_it_names() -> None:
    named, other = io.StringIO(), io.StringIO()
    loud, quiet = ConsoleNotifier(named), ConsoleNotifier(other)
    quiet.name = "quiet"
    mgr = AlertManager.in_memory([loud, quiet])
    await mgr.add_alert(above(150, ("console",)))
    [fired] = await mgr.check_alerts(quote(0, 151))
    assert fired.channels == ["console"]
    assert "ALERT AAPL" in named.getvalue() and other.getvalue() == ""


async def test_each_instance_follows_the_rows_a_loop_per_channel(
    redis_boundary: RedisClient,
) -> None:
    store = RedisChannelStore(redis_boundary)
    deliveries = ChannelDeliveries(
        AlertOutbox(redis_boundary), store, lambda c: Recorder(), reclaim_s=2.0,
        max_attempts=3, refresh_s=0.05,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(deliveries.run(stop))
    try:
        async with asyncio.timeout(DEADLINE):
            await store.put(hook("one"), create=True, cap=0)
            while deliveries.delivery("one") is None:  # each refresh that changes sets it
                await deliveries.changed.wait()
                deliveries.changed.clear()
            await store.put(hook("one", digest=True), create=False, cap=0)  # changed: restarted
            while (d := deliveries.delivery("one")) is None or not d.channel.digest:
                await deliveries.changed.wait()
                deliveries.changed.clear()
            assert await store.delete("one")
            while deliveries.running:
                await deliveries.changed.wait()
                deliveries.changed.clear()
        assert deliveries.delivery("one") is None
    finally:
        stop.set()
        await task


async def test_a_digest_channel_without_quiet_hours_sends_one_digest_per_release(
    redis_boundary: RedisClient, manager: AlertManager
) -> None:
    row = hook("batch", digest=True)
    await channel(redis_boundary, row)
    sent = Recorder()
    batch = delivery(redis_boundary, row, sent)
    for i in range(2):
        await manager.add_alert(above(150, ("batch",)).model_copy(update={"id": f"d{i}"}))
    fires = await manager.check_alerts(quote(0, 151))
    async with asyncio.timeout(DEADLINE):
        assert await batch.run_once() == 0 and batch.held_count == 2
        assert await batch.release_held() == 2
    [digest] = sent.sent
    assert digest.title.startswith("marketpulse: fired 2 times since")
    assert {f.id for f in digest.fires} == {f.id for f in fires}
