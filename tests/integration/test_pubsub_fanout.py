"""The instance's pub/sub fan-out against the real redis-server: queued and sink subscribers
see a channel's messages in publish order, and a sink that fails does not stop the hub."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from marketpulse.infra.redis.pubsub import EventHub

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
