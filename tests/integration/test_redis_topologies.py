"""The Redis boundary behaves the same on one server and on a cluster, found from the URL alone
(``any_redis_url`` runs each test on both: the suite's test Redis and one node of its cluster).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.client import RedisClient

DEADLINE = 30.0
INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
INCR_BY_SHA = hashlib.sha1(INCR_BY.encode()).hexdigest()


@pytest.fixture
async def boundary(any_redis_url: str) -> AsyncIterator[RedisClient]:
    client = RedisClient.from_url(any_redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_topology_is_found_from_the_url(
    boundary: RedisClient, request: pytest.FixtureRequest
) -> None:
    clustered = request.node.callspec.params["any_redis_url"] == "cluster"
    assert boundary.is_cluster is None
    async with asyncio.timeout(DEADLINE):
        await boundary.ping()
        topology = await boundary.topology()
    assert boundary.is_cluster is clustered and topology.cluster is clustered
    assert len(topology.primaries()) == (3 if clustered else 1)
    # one server: after the first call, the hot path takes the plain route again
    assert boundary.mux.divert is clustered


async def test_commands_scripts_and_pipelines_answer_alike(boundary: RedisClient) -> None:
    keys = [f"mp:{{s{i}}}:n" for i in range(12)]  # spread over the slots
    async with asyncio.timeout(DEADLINE):
        for i, key in enumerate(keys):
            assert await boundary.mux.evalsha(INCR_BY_SHA, INCR_BY, [key], [i]) == i
            assert await boundary.mux.execute("INCR", key) == i + 1
        assert await boundary.call("GET", keys[3]) == b"4"
        assert await boundary.pipeline([("INCR", k) for k in keys]) == list(range(2, 14))
        same_slot = [("INCR", "mp:{t}:a"), ("INCR", "mp:{t}:b")]
        assert await boundary.pipeline(same_slot, transaction=True) == [1, 1]
        await boundary.call("SET", "mp:{s0}:text", "x")
        bulk = await boundary.pipeline_packed(
            [("SCRIPT", "LOAD", INCR_BY), *(("EVALSHA", INCR_BY_SHA, 1, k, 10) for k in keys),
             ("INCR", "mp:{s0}:text")]
        )  # fmt: skip
    assert bulk[0] == INCR_BY_SHA.encode()
    assert bulk[1:-1] == [i + 12 for i in range(12)]
    assert isinstance(bulk[-1], RedisUnavailable)  # an error reply, in its place
    with pytest.raises(RedisUnavailable):
        await boundary.mux.execute("INCR", "mp:{s0}:text")
