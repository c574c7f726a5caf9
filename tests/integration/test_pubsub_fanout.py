"""The instance's pub/sub fan-out against the real redis-server: queued and sink subscribers
see a channel's messages in publish order, and a sink that fails does not stop the hub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import make_client
from marketpulse.infra.redis.pubsub import EventHub
from support.logs import LogWatch
from support.tcp_proxy import TcpProxy

DEADLINE = 10.0


@pytest.fixture
async def hub(redis_client: Redis) -> AsyncIterator[EventHub]:
    hub = EventHub(redis_client)
    stop = asyncio.Event()
    task = asyncio.ensure_future(hub.run(stop))
    try:
        yield hub
    finally:
        stop.set()
        await task


async def test_queued_and_sink_subscribers_get_every_message_in_order(
    hub: EventHub, redis_client: Redis
) -> None:
    got: list[bytes | None] = []
    arrived = asyncio.Event()

    def sink(data: bytes | None) -> None:
        got.append(data)
        if len(got) == 3:
            arrived.set()

    async with asyncio.timeout(DEADLINE), contextlib.AsyncExitStack() as stack:
        queued = await stack.enter_async_context(hub.subscription("ch"))
        await stack.enter_async_context(hub.subscription("ch", sink=sink))
        for i in range(3):
            await redis_client.publish("ch", f"m{i}")
        assert [await queued.get() for _ in range(3)] == [b"m0", b"m1", b"m2"]
        await arrived.wait()
    assert got == [b"m0", b"m1", b"m2"]


async def test_a_failing_sink_does_not_stop_the_hub(hub: EventHub, redis_client: Redis) -> None:
    seen: list[bytes | None] = []

    def bad(data: bytes | None) -> None:
        seen.append(data)
        raise RuntimeError("subscriber bug")

    async with asyncio.timeout(DEADLINE), contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(hub.subscription("ch", sink=bad))
        good = await stack.enter_async_context(hub.subscription("ch"))
        await redis_client.publish("ch", "a")
        await redis_client.publish("ch", "b")
        assert [await good.get(), await good.get()] == [b"a", b"b"]
    assert seen == [b"a", b"b"]  # the failing sink got the next message too


async def test_a_connection_that_stops_answering_ends_its_subscribers(
    redis_proxy: TcpProxy, redis_client: Redis
) -> None:
    """Replies lost on an open connection (a partition, a dead middlebox: no reset arrives):
    the messages published meanwhile never reach this instance, so the hub must notice the
    silence (it PINGs a quiet connection) and end its subscribers, as on a lost connection,
    instead of leaving them open and starved until TCP gives up (hours). Then it reconnects."""
    client = make_client(redis_proxy.url())
    hub = EventHub(client, liveness_s=0.5)
    stop = asyncio.Event()
    task = asyncio.ensure_future(hub.run(stop))
    try:
        async with asyncio.timeout(DEADLINE):
            sub = await hub.subscribe("c")
            await redis_client.publish("c", "before")
            assert await sub.get() == b"before"
            redis_proxy.drop_replies()  # never restored while the subscriber waits
            await redis_client.publish("c", "lost")
            assert await sub.get() is None  # ended: its socket would close with 1012
            redis_proxy.restore()
            again = await hub.subscribe("c")  # reconnected
            await redis_client.publish("c", "after")
            assert await again.get() == b"after"
    finally:
        stop.set()
        await task
        await client.aclose()


async def test_a_server_that_accepts_and_drops_is_not_taken_for_redis_answering() -> None:
    """A dying redis-server's socket can still accept a connection, then drop it: the hub
    counts as up only once Redis answers a PING on the new connection, so such a server is one
    outage (one line), never "answers again" between its drops."""
    accepted = 0
    thrice = asyncio.Event()

    async def accept_and_drop(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        if accepted >= 3:
            thrice.set()
        writer.close()

    server = await asyncio.start_server(accept_and_drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = make_client(f"redis://127.0.0.1:{port}/0")
    hub = EventHub(client)
    stop = asyncio.Event()
    with LogWatch("marketpulse.infra.redis.outage", logging.WARNING) as lines:
        task = asyncio.ensure_future(hub.run(stop))
        try:
            async with asyncio.timeout(DEADLINE):
                await thrice.wait()
        finally:
            stop.set()
            await task
            await client.aclose()
            server.close()
            await server.wait_closed()
    said = lines.messages()
    assert not [m for m in said if "answers again (" in m], said
    assert len([m for m in said if "is unreachable" in m]) == 1, said


async def test_session_channels_are_sharded_and_share_the_connection_with_classic_ones(
    hub: EventHub, redis_client: Redis
) -> None:
    """A session's channel is SSUBSCRIBEd (a classic PUBLISH never reaches it, an SPUBLISH
    does, in order), next to a classic channel on the same connection; after the last local
    subscriber leaves (SUNSUBSCRIBE) and a new one comes at once, the new one gets what follows
    and the confirmation of the old SUNSUBSCRIBE ends nobody."""
    channel = keys.session_events("s")
    async with asyncio.timeout(DEADLINE), contextlib.AsyncExitStack() as stack:
        alerts = await stack.enter_async_context(hub.subscription(keys.ALERT_EVENTS))
        session = await stack.enter_async_context(hub.subscription(channel))
        assert await redis_client.publish(channel, "classic") == 0  # not a classic subscriber
        for i in range(3):
            assert await redis_client.spublish(channel, f"e{i}") == 1
        await redis_client.publish(keys.ALERT_EVENTS, "alert")
        assert [await session.get() for _ in range(3)] == [b"e0", b"e1", b"e2"]
        assert await alerts.get() == b"alert"
        hub.unsubscribe_now(session)
        again = await stack.enter_async_context(hub.subscription(channel))
        await redis_client.spublish(channel, "after")
        assert await again.get() == b"after"
        assert hub.subscriber_count == 2 and not hub._leaving
        sub_count: Any = await redis_client.execute_command(  # type: ignore[no-untyped-call]
            "PUBSUB", "SHARDNUMSUB", channel
        )
        assert sub_count == [channel.encode(), 1]
