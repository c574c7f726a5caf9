"""The Redis boundary on a real Redis Cluster (the suite's loopback cluster, 3 primaries and 3
replicas): found from a URL naming one node, commands and scripts routed by slot to every
primary, a script across slots refused, MOVED, ASK, NOSCRIPT after a failover, a primary
killed (-9) or frozen (SIGSTOP). ``infra/redis/cluster.py`` says what each case must do."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.cluster import ClusterMux, CrossSlotKeys, key_slot
from marketpulse.infra.redis.endpoint import Endpoint
from support.cluster import LocalCluster, Node

DEADLINE = 90.0  # every wait of these tests: a failover takes 2-5 s here
GET_LUA = "return redis.call('GET', KEYS[1])"


def _keys_on_every_primary(primaries: list[Node], owners: dict[int, str]) -> dict[str, Node]:
    """A key for each primary (by the map the cluster itself reports)."""
    out: dict[str, Node] = {}
    i = 0
    while len(out) < len(primaries):
        key = f"mp:k{i}"
        owner = next(p for p in primaries if p.addr == owners[key_slot(key)])
        if owner not in out.values():
            out[key] = owner
        i += 1
    return out


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[RedisClient]:
    c = RedisClient.from_url(cluster.url)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def fast_mux(cluster: LocalCluster) -> AsyncIterator[ClusterMux]:
    """The cluster transport with a 1 s reply timeout (the service's is 10 s) and one retry."""
    mux = ClusterMux(Endpoint(port=cluster.nodes[0].port), timeout_s=1.0, probe_s=1.0, retries=1)
    try:
        yield mux
    finally:
        await mux.aclose()


pytestmark = pytest.mark.cluster


async def test_a_url_naming_one_node_runs_on_the_cluster(
    client: RedisClient, cluster: LocalCluster
) -> None:
    assert client.is_cluster is None  # nothing asked yet
    async with asyncio.timeout(DEADLINE):
        topology = await client.topology()
    assert client.is_cluster is True and topology.cluster
    primaries = await cluster.primary_nodes()
    assert sorted(e.port for e in topology.primaries()) == [p.port for p in primaries]
    owner = await cluster.primary_of("mp:{s1}:session")
    assert (await topology.node_for("mp:{s1}:events")).port == owner.port


async def test_commands_and_scripts_reach_the_primary_of_each_key(
    client: RedisClient, cluster: LocalCluster
) -> None:
    primaries = await cluster.primary_nodes()
    assert len(primaries) == 3
    owners = await cluster.owners(primaries[0])
    keys = _keys_on_every_primary(primaries, owners)
    async with asyncio.timeout(DEADLINE):
        for i, key in enumerate(keys):
            await client.mux.execute("SET", key, f"v{i}")  # the hot path
            script = "return redis.call('SET', KEYS[1], ARGV[1])"
            await client.mux.evalsha("0" * 40, script, [f"{key}:s"], [f"s{i}"])
            await client.call("SET", f"{key}:c", f"c{i}")  # redis-py's cluster client
        await client.pipeline([("SET", f"{k}:p", "p") for k in keys])
        bulk = await client.pipeline_packed([("GET", k) for k in keys])
    assert bulk == [f"v{i}".encode() for i in range(len(keys))]
    for key, owner in keys.items():
        async with owner.client() as r:  # each key is on the primary its slot names
            assert await r.get(key) is not None
        for suffix in (":s", ":c", ":p"):
            expect = await cluster.primary_of(key + suffix)
            async with expect.client() as r:
                assert await r.get(key + suffix) is not None


async def test_a_script_whose_keys_span_slots_is_refused_naming_them(
    client: RedisClient,
) -> None:
    a, b = "mp:{s1}:session", "mp:{runs}:stream"
    assert key_slot(a) != key_slot(b)
    async with asyncio.timeout(DEADLINE):
        await client.topology()
        with pytest.raises(CrossSlotKeys) as err:
            await client.mux.evalsha("0" * 40, "return 1", [a, b], [])
        with pytest.raises(CrossSlotKeys):
            await client.pipeline([("SET", a, 1), ("SET", b, 1)], transaction=True)
    assert a in str(err.value) and b in str(err.value)


async def test_moved_after_a_slot_migration_patches_the_map(
    client: RedisClient, cluster: LocalCluster
) -> None:
    key = "mp:{moving}:x"
    async with asyncio.timeout(DEADLINE):
        await client.mux.execute("SET", key, "before")
        topology = await client.topology()
        epoch = topology.epoch
        source = await cluster.primary_of(key)
        target = next(p for p in await cluster.primary_nodes() if p is not source)
        await cluster.move_slot(key_slot(key), target)
        # the client's map still names the source: it answers MOVED, the call follows it
        assert await client.mux.execute("GET", key) == b"before"
        assert await topology.changed(epoch) != epoch  # the hub's notification
        assert (await topology.node_for(key)).port == target.port
        await client.mux.evalsha("0" * 40, "return redis.call('SET', KEYS[1], 'after')", [key], [])
    async with target.client() as r:
        assert await r.get(key) == b"after"


async def test_ask_while_a_slot_migrates_without_changing_the_map(
    client: RedisClient, cluster: LocalCluster
) -> None:
    moved, stays = "mp:{asked}:moved", "mp:{asked}:stays"
    slot = key_slot(moved)
    async with asyncio.timeout(DEADLINE):
        await client.mux.execute("SET", moved, "m")
        await client.mux.execute("SET", stays, "s")
        topology = await client.topology()
        source = await cluster.primary_of(moved)
        target = next(p for p in await cluster.primary_nodes() if p is not source)
        await cluster.begin_migration(slot, target)
        await cluster.migrate_keys(slot, source, target, [moved])
        epoch = topology.epoch
        try:
            # the source answers ASK for the migrated key: ASKING + the command on the target
            assert await client.mux.execute("GET", moved) == b"m"
            assert await client.mux.evalsha("0" * 40, GET_LUA, [moved], []) == b"m"
            assert await client.mux.execute("GET", stays) == b"s"  # still the source's
            assert topology.epoch == epoch  # ASK changes no map
            assert (await topology.node_for(moved)).port == source.port
        finally:
            await cluster.migrate_keys(slot, source, target)
            await cluster.finish_migration(slot, target)


async def test_a_promoted_replica_lacking_the_script_is_sent_it(
    client: RedisClient, cluster: LocalCluster
) -> None:
    key = "mp:{scripted}:x"
    source = "return redis.call('INCR', KEYS[1])"
    sha = hashlib.sha1(source.encode()).hexdigest()
    async with asyncio.timeout(DEADLINE):
        assert await client.mux.evalsha(sha, source, [key], []) == 1  # EVAL: cached there only
        primary = await cluster.primary_of(key)
        (replica,) = await cluster.replicas_of(primary)
        async with replica.client() as r:
            assert await r.script_exists(sha) == [False]  # scripts replicate as effects
        await cluster.failover(replica)
        assert await client.mux.evalsha(sha, source, [key], []) == 2  # NOSCRIPT, then EVAL
    async with replica.client() as r:
        assert await r.script_exists(sha) == [True]


async def test_a_killed_primary_fails_calls_then_they_recover_on_its_replica(
    client: RedisClient, cluster: LocalCluster
) -> None:
    key = "mp:{killed}:x"
    async with asyncio.timeout(DEADLINE):
        await client.mux.execute("SET", key, "kept")
        primary = await cluster.primary_of(key)
        async with primary.client() as r:
            assert await r.wait(1, 5000) == 1  # on its replica too
        cluster.kill9(primary)
        failed = 0
        while True:  # each call ends (refused, CLUSTERDOWN, retried with backoff, then raised)
            try:
                got = await client.mux.execute("GET", key)
                break
            except RedisUnavailable:
                failed += 1
        assert failed >= 1  # the outage was seen as RedisUnavailable, not as a hang
        assert got == b"kept"  # acknowledged by the replica before the kill: not lost
        assert await client.call("GET", key) == b"kept"  # redis-py's path follows too
        new = await cluster.primary_of(key)
    assert new is not primary


async def test_a_frozen_primary_makes_calls_time_out_not_hang(
    fast_mux: ClusterMux, cluster: LocalCluster
) -> None:
    key = "mp:{frozen}:x"
    async with asyncio.timeout(DEADLINE):
        await fast_mux.execute("SET", key, "v")
        primary = await cluster.primary_of(key)
        async with primary.client() as r:
            assert await r.wait(1, 5000) == 1
        cluster.freeze(primary)
        timed_out = 0
        while True:
            # the bound of one call: (retries + 1) * (timeout_s + probe_s), with backoff
            async with asyncio.timeout((fast_mux.retries + 1) * 2.0 + 5.0):
                try:
                    got = await fast_mux.execute("GET", key)
                    break
                except RedisUnavailable:
                    timed_out += 1
        assert timed_out >= 1
        assert got == b"v"  # served by the replica that took over
