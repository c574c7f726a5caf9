"""The fault-injecting proxy of tests/support/tcp_proxy.py, against the real redis-server: it
relays, and each fault does what it says (and nothing else). Raw sockets speak RESP here so
what the proxy does is seen byte for byte; redis-py shows what a client sees."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis.asyncio as aioredis
from redis.asyncio import Redis

from marketpulse.infra.redis.client import make_client
from marketpulse.infra.redis.embedded import EmbeddedRedis
from support.tcp_proxy import TcpProxy

DEADLINE = 10.0


async def _open(proxy: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(DEADLINE):
        return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _ask(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], command: bytes, reply: bytes
) -> None:
    reader, writer = conn
    writer.write(command)
    async with asyncio.timeout(DEADLINE):
        assert await reader.readexactly(len(reply)) == reply


async def _ended(reader: asyncio.StreamReader) -> None:
    """The connection was closed or reset by the proxy (under the deadline)."""
    async with asyncio.timeout(DEADLINE):
        with contextlib.suppress(ConnectionError):
            assert await reader.read() == b""


async def test_it_relays_both_ways_and_counts(redis_proxy: TcpProxy, redis_client: Redis) -> None:
    client = aioredis.Redis.from_url(redis_proxy.url())
    try:
        assert await client.set("k", "v") is True
        assert await client.get("k") == b"v"
        await client.execute_command("PUBLISH", "c", "m")  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()
    assert await redis_client.get("k") == b"v"  # the same server, not a copy
    s = redis_proxy.stats
    assert s.accepted >= 1 and s.refused == 0 and s.bytes_dropped == 0
    assert s.bytes_up > 0 and s.bytes_down > 0


async def test_a_delay_holds_replies_in_order_until_restored(redis_proxy: TcpProxy) -> None:
    conn = await _open(redis_proxy)
    await _ask(conn, b"PING\r\n", b"+PONG\r\n")
    redis_proxy.delay(600)  # longer than the test: only restore() can release it
    reader, writer = conn
    relayed = redis_proxy.stats.bytes_down
    writer.write(b"INCR n\r\nINCR n\r\nINCR n\r\n")
    await redis_proxy.until(lambda: redis_proxy.stats.bytes_held == 3 * len(b":1\r\n"))
    assert redis_proxy.stats.bytes_down == relayed  # held, not relayed
    assert redis_proxy.restore() == 0  # nothing was lost: no connection reset
    async with asyncio.timeout(DEADLINE):
        assert await reader.readexactly(12) == b":1\r\n:2\r\n:3\r\n"
    await _ask(conn, b"PING\r\n", b"+PONG\r\n")  # the same connection goes on
    writer.close()


async def test_a_client_with_a_shorter_timeout_gives_up_on_a_delayed_reply(
    redis_proxy: TcpProxy,
) -> None:
    client = aioredis.Redis.from_url(redis_proxy.url(), socket_timeout=0.2)
    try:
        await client.ping()
        redis_proxy.delay(600)
        with pytest.raises(aioredis.TimeoutError):
            await client.ping()
        redis_proxy.restore()
        assert await client.ping() is True  # reconnected
    finally:
        await client.aclose()


async def test_dropped_replies_leave_the_command_applied_and_the_connection_open(
    redis_proxy: TcpProxy, redis_client: Redis
) -> None:
    conn = await _open(redis_proxy)
    await _ask(conn, b"PING\r\n", b"+PONG\r\n")
    redis_proxy.drop_replies()
    reader, writer = conn
    writer.write(b"INCR applied\r\n")
    await redis_proxy.until(lambda: redis_proxy.stats.bytes_dropped >= len(b":1\r\n"))
    assert await redis_client.get("applied") == b"1"  # it ran; only its reply was lost
    assert redis_proxy.open_connections == 1 and not reader.at_eof()
    fresh = await _open(redis_proxy)  # a connection made during the drop loses replies too
    fresh[1].write(b"PING\r\n")
    await redis_proxy.until(lambda: redis_proxy.stats.bytes_dropped >= len(b":1\r\n+PONG\r\n"))
    assert redis_proxy.restore() == 2  # both lost bytes: reset, never used again
    await _ended(reader)
    await _ended(fresh[0])
    await _ask(await _open(redis_proxy), b"GET applied\r\n", b"$1\r\n1\r\n")
    assert redis_proxy.stats.reset_after_drop == 2


async def test_a_cut_resets_every_connection_and_may_refuse_new_ones(
    redis_proxy: TcpProxy,
) -> None:
    conns = [await _open(redis_proxy) for _ in range(3)]
    for c in conns:
        await _ask(c, b"PING\r\n", b"+PONG\r\n")
    assert redis_proxy.cut() == 3
    for reader, _ in conns:
        await _ended(reader)
    await redis_proxy.until(lambda: redis_proxy.open_connections == 0)
    await _ask(await _open(redis_proxy), b"PING\r\n", b"+PONG\r\n")  # new ones relayed
    assert redis_proxy.cut(refuse_s=600) == 1
    refused_before = redis_proxy.stats.refused
    reader, _ = await _open(redis_proxy)  # the kernel accepts it; the proxy resets it
    await _ended(reader)
    assert redis_proxy.stats.refused == refused_before + 1
    redis_proxy.restore()  # ends the refusal too
    await _ask(await _open(redis_proxy), b"PING\r\n", b"+PONG\r\n")


async def test_the_services_client_retries_a_command_whose_connection_was_cut(
    redis_proxy: TcpProxy,
) -> None:
    client = make_client(redis_proxy.url())
    try:
        await client.ping()
        redis_proxy.cut()
        assert await client.ping() is True  # its retry, on a fresh connection
    finally:
        await client.aclose()
    assert redis_proxy.stats.cut == 1 and redis_proxy.stats.accepted == 2


async def test_close_resets_the_connections_and_leaves_no_task(
    redis_server: EmbeddedRedis, redis_url: str
) -> None:
    proxy = await TcpProxy(redis_server.port).start()
    port = proxy.port
    conn = await _open(proxy)
    await _ask(conn, b"PING\r\n", b"+PONG\r\n")
    proxy.delay(600)
    conn[1].write(b"PING\r\n")
    await proxy.until(lambda: proxy.stats.bytes_held > 0)
    await proxy.aclose()  # the leak check of conftest.py sees every task of the proxy gone
    await _ended(conn[0])
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


def test_it_relays_to_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        TcpProxy(6379, upstream_host="10.0.0.1")
