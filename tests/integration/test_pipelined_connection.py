"""The multiplexed connection of the hot path, against the real redis-server."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.client import make_client
from marketpulse.infra.redis.mux import RedisMux
from marketpulse.sessions.store import SCRIPTS

DEADLINE = 10.0


async def _blocked_in_blpop(redis: Redis, client_id: str | None = None) -> None:
    """Readiness probe: ask Redis (a round trip each time) until a client blocks in BLPOP."""
    while True:
        clients = await redis.client_list()
        if any(c["cmd"] == "blpop" and client_id in (None, c["id"]) for c in clients):
            return


async def test_concurrent_calls_are_applied_and_answered_in_call_order(
    redis_mux: RedisMux,
) -> None:
    async with asyncio.timeout(DEADLINE):
        got = await asyncio.gather(*(redis_mux.execute("INCR", "n") for _ in range(2000)))
    assert got == list(range(1, 2001))  # one connection: the i-th call is the i-th INCR


async def test_evalsha_loads_a_script_the_server_does_not_know(
    redis_mux: RedisMux, redis_client: Redis
) -> None:
    lua = SCRIPTS.load("session_touch")
    await redis_client.script_flush()
    assert await redis_client.script_exists(lua.sha) == [False]
    async with asyncio.timeout(DEADLINE):
        # a missing session: the script runs (EVAL fallback) and answers 'gone'-like nil/0
        first = await redis_mux.evalsha(
            lua.sha, lua.source, ["mp:{x}:session", "ev"], ["t", "now", 5]
        )
    assert await redis_client.script_exists(lua.sha) == [True]
    async with asyncio.timeout(DEADLINE):
        again = await redis_mux.evalsha(
            lua.sha, lua.source, ["mp:{x}:session", "ev"], ["t", "now", 5]
        )
    assert again == first


async def test_an_error_reply_raises_and_the_connection_stays_usable(
    redis_mux: RedisMux,
) -> None:
    async with asyncio.timeout(DEADLINE):
        await redis_mux.execute("SET", "s", "text")
        results = await asyncio.gather(
            redis_mux.execute("INCR", "s"), redis_mux.execute("GET", "s"), return_exceptions=True
        )
    assert isinstance(results[0], RedisUnavailable)  # an error reply, translated by the mux
    assert results[1] == b"text"


async def test_calls_in_flight_survive_a_killed_connection(
    redis_mux: RedisMux, redis_client: Redis
) -> None:
    async with asyncio.timeout(DEADLINE):
        mux_id = await redis_mux.execute("CLIENT", "ID")
        blocked = asyncio.ensure_future(redis_mux.execute("BLPOP", "q", 0))
        behind = asyncio.ensure_future(redis_mux.execute("INCR", "after"))
        await _blocked_in_blpop(redis_client, str(mux_id))
        assert await redis_client.client_kill_filter(_id=str(mux_id)) == 1
        # both calls are retried on a fresh connection: the BLPOP blocks again, then gets this
        await _blocked_in_blpop(redis_client)
        await redis_client.rpush("q", "item")
        assert await blocked == [b"q", b"item"]
        assert await behind == 1
    assert await redis_mux.execute("CLIENT", "ID") != mux_id


async def test_a_connection_that_stops_answering_is_given_up_after_the_timeout(
    redis_client: Redis,
) -> None:
    mux = RedisMux.for_client(redis_client, timeout_s=0.2, retries=0)
    try:
        async with asyncio.timeout(DEADLINE):  # a deadline for the test, not the behaviour
            with pytest.raises(RedisUnavailable, match="did not reply"):
                await mux.execute("BLPOP", "never", 0)
            assert await mux.execute("PING") == b"PONG"  # a fresh connection afterwards
    finally:
        await mux.aclose()


async def test_the_mux_uses_the_clients_database(redis_url: str) -> None:
    other = make_client(redis_url.rsplit("/", 1)[0] + "/2")
    mux = RedisMux.for_client(other)
    try:
        await mux.execute("SET", "where", "db2")
        assert await other.get("where") == b"db2"
    finally:
        await other.flushdb()
        await mux.aclose()
        await other.aclose()


async def test_a_closed_mux_refuses_calls(redis_client: Redis) -> None:
    mux = RedisMux.for_client(redis_client)
    await mux.execute("PING")
    await mux.aclose()
    with pytest.raises(RedisUnavailable):
        await mux.execute("PING")
