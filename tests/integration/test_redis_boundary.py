"""The Redis boundary translates: whatever fails underneath (no server, an error reply, a hub
that stopped), a store or the client raises ``RedisUnavailable`` from the original error, never
a redis-py exception."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from marketpulse.alerts.store import RedisAlertStore
from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.clock import RedisTickClock
from marketpulse.sessions.store import Revaluation, SessionStore, hash_token
from support.tcp_proxy import TcpProxy

DEADLINE = 10.0


def assert_translated(exc: BaseException) -> None:
    assert type(exc) is RedisUnavailable
    assert not isinstance(exc, RedisError)
    assert exc.__cause__ is not None  # raised from what failed underneath


async def test_store_calls_against_a_closed_port_raise_redis_unavailable(
    dead_redis: RedisClient,
) -> None:
    calls = [
        RedisAlertStore(dead_redis).symbols(),  # a plain command (pooled client)
        RedisAlertStore(dead_redis).add_symbol("AAPL"),
        RedisTickClock(dead_redis).tick(),
        SessionStore(dead_redis, ttl_s=60).read("s", hash_token("t"), "now"),  # a script (mux)
        SessionStore(dead_redis, ttl_s=60).revalue_many(1, "now", [], ["s"]),  # packed bulk
        dead_redis.pipeline([("GET", "a"), ("GET", "b")], transaction=True),
        dead_redis.publish("channel", "message"),
    ]
    async with asyncio.timeout(DEADLINE):
        for call in calls:
            with pytest.raises(RedisUnavailable) as caught:
                await call
            assert_translated(caught.value)


async def test_error_replies_raise_redis_unavailable_on_every_path(
    redis_boundary: RedisClient, redis_client: Redis
) -> None:
    await redis_client.set("text", "not a number")
    async with asyncio.timeout(DEADLINE):
        with pytest.raises(RedisUnavailable) as caught:
            await redis_boundary.call("INCR", "text")
        assert_translated(caught.value)
        with pytest.raises(RedisUnavailable) as caught:
            await redis_boundary.pipeline([("INCR", "text")])
        assert_translated(caught.value)
        await redis_client.set(keys.session("s"), "a string, not a hash")
        with pytest.raises(RedisUnavailable) as caught:  # a script's error reply, via the mux
            await SessionStore(redis_boundary, ttl_s=60).read("s", hash_token("t"), "now")
        assert_translated(caught.value)
        # the bulk path hands an error reply back in place, as our error, and goes on
        store = SessionStore(redis_boundary, ttl_s=60)
        outcomes, found = await store.revalue_many(
            1, "now", [Revaluation("s", b"1", 1.0, "{}")], ["missing"]
        )
        assert isinstance(outcomes[0], RedisUnavailable)
        assert found == [None]


async def test_subscribing_through_a_stopped_hub_raises_redis_unavailable(
    redis_url: str,
) -> None:
    client = RedisClient.from_url(redis_url)
    stop = asyncio.Event()
    stop.set()
    try:
        async with asyncio.timeout(DEADLINE):
            await client.run(stop)  # returns at once: the hub has stopped
            with pytest.raises(RedisUnavailable):
                async with client.subscription("channel"):
                    pass
    finally:
        await client.aclose()


async def test_every_path_retries_a_command_whose_connection_was_cut(
    redis_proxy: TcpProxy,
) -> None:
    """A pooled connection reset under the client (a restarted server, an idle-connection
    reaper, a failover) must cost a retry on a fresh connection, not a RedisUnavailable: the
    redis-py retry the module promises is the pool's (redis-py ignores a ``retry`` given to a
    client built on a pool of its own)."""
    client = RedisClient.from_url(redis_proxy.url())
    try:
        async with asyncio.timeout(DEADLINE):
            await client.ping()
            await client.pipeline([("SET", "a", 1)])
            assert await client.mux.execute("PING") == b"PONG"
            for _ in range(3):  # each time on connections that are open and idle
                assert redis_proxy.cut() >= 2
                await client.ping()
                assert await client.call("GET", "a") == b"1"
                assert await client.pipeline([("GET", "a"), ("EXISTS", "a")]) == [b"1", 1]
                assert await client.mux.execute("GET", "a") == b"1"
    finally:
        await client.aclose()


async def test_writing_on_a_connection_reset_under_a_stream_fails_as_a_lost_connection() -> None:
    """python/cpython#136234, fixed by marketpulse.infra.transport_fix (installed with the
    boundary): ``writelines`` on a transport whose connection was lost raised AttributeError,
    which redis-py (it writes every command so) neither retries nor translates."""
    reset = asyncio.Event()

    async def reset_at_once(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        sock = w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()
        reset.set()

    server = await asyncio.start_server(reset_at_once, "127.0.0.1", 0)
    try:
        async with asyncio.timeout(DEADLINE):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.sockets[0].getsockname()[1]
            )
            await reset.wait()
            with contextlib.suppress(ConnectionError):
                await reader.read()  # the reset arrives
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()  # ... and the transport has let go of its socket
            writer.writelines([b"PING\r\n"])  # dropped, as write() drops it
            with pytest.raises(ConnectionError):
                await reader.read()
    finally:
        server.close()
        await server.wait_closed()
