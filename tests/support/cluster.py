"""A real Redis Cluster on loopback for the tests: 3 primaries and 3 replicas of ``redis-server``.

``LocalCluster(root).start()`` starts six ``redis-server`` children (``EmbeddedRedis``, one
directory each, AOF on, ``--cluster-enabled yes --cluster-node-timeout 2000
--repl-diskless-sync-delay 0``, a free loopback port and a free cluster-bus port each), joins
them with ``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`` and returns once
probes say the cluster serves: ``cluster_state:ok`` on every node, every node agreeing on the
owner of every slot, and every primary's replica acknowledging its writes (``WAIT``, the
server's own wait). Every wait is a probe under a deadline, never a sleep. ``stop()`` sends
SIGTERM, then SIGKILL to a node that does not exit.

Faults for the tests (async: the client under test keeps running on the loop meanwhile):
``kill9(node)``, ``freeze(node)`` / ``thaw(node)`` (SIGSTOP / SIGCONT), ``failover(replica)``
(``CLUSTER FAILOVER`` and its completion), ``begin_migration(slot, to)`` / ``migrate_keys`` /
``finish_migration`` (``CLUSTER SETSLOT IMPORTING/MIGRATING``, ``MIGRATE``, ``SETSLOT NODE``)
and ``move_slot`` (all three). ``heal()`` undoes what a test did to the processes (restarts a
killed node on its port and directory, thaws a frozen one) and awaits a serving cluster again;
the function-scoped fixture calls it before each test and flushes every primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from marketpulse.infra.redis.cluster import SLOTS, key_slot
from marketpulse.infra.redis.embedded import EmbeddedRedis, free_port

NODE_TIMEOUT_MS = 2000
DEADLINE_S = 60.0  # start, failover, heal: each well under this on 2 busy cores


@dataclass(eq=False)
class Node:
    server: EmbeddedRedis
    bus_port: int

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.server.pid != 0

    @contextlib.asynccontextmanager
    async def client(self, timeout_s: float = 5.0) -> AsyncIterator[Redis]:
        """A plain (non-cluster) client to this node only."""
        r = Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout_s)
        try:
            yield r
        finally:
            await r.aclose()


def _command(r: Redis, *args: Any) -> Any:
    return r.execute_command(*args)  # type: ignore[no-untyped-call]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class LocalCluster:
    root: Path
    primaries: int = 3
    replicas_per_primary: int = 1
    nodes: list[Node] = field(default_factory=list)
    frozen: set[Node] = field(default_factory=set)
    last_probe_error: Exception | None = None

    @property
    def url(self) -> str:
        """A URL naming one node (what ``MARKETPULSE_REDIS_URL`` would be set to)."""
        return self.nodes[0].url

    def _node(self, i: int) -> Node:
        extra = (
            "--cluster-enabled", "yes",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-port", str(bus := free_port()),
            "--repl-diskless-sync-delay", "0",
        )  # fmt: skip
        server = EmbeddedRedis(self.root / f"node-{i}", durable=True, extra_args=extra)
        return Node(server, bus)

    def start(self) -> None:
        count = self.primaries * (1 + self.replicas_per_primary)
        self.nodes = [self._node(i) for i in range(count)]
        try:
            for node in self.nodes:
                node.server.start()
            subprocess.run(
                ["redis-cli", "--cluster", "create", *(n.addr for n in self.nodes),
                 "--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes"],
                check=True, capture_output=True, timeout=DEADLINE_S,
            )  # fmt: skip
            asyncio.run(self.until_serving())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.server.pid, signal.SIGCONT)  # a frozen node ignores SIGTERM
            node.server.stop(timeout_s=5.0)  # SIGTERM, then SIGKILL

    # -- probes ------------------------------------------------------------------------------

    async def _info(self, node: Node, section: str) -> dict[str, str]:
        """``CLUSTER INFO`` (section ``cluster``) or ``INFO <section>`` as a dict."""
        words = ("CLUSTER", "INFO") if section == "cluster" else ("INFO", section)
        async with node.client(timeout_s=1.0) as r:
            reply = await _command(r, *words)
        if isinstance(reply, dict):  # redis-py parses INFO (not CLUSTER INFO)
            return {str(k): _text(v) for k, v in reply.items()}
        out: dict[str, str] = {}
        for line in _text(reply).splitlines():
            k, sep, v = line.partition(":")
            if sep:
                out[k.strip()] = v.strip()
        return out

    async def owners(self, node: Node) -> dict[int, str]:
        """Slot → the primary ``host:port`` that ``node`` believes serves it."""
        async with node.client(timeout_s=1.0) as r:
            ranges = await _command(r, "CLUSTER", "SLOTS")
        out: dict[int, str] = {}
        for start, end, primary, *_ in ranges:
            addr = f"127.0.0.1:{int(primary[1])}"
            for slot in range(int(start), int(end) + 1):
                out[slot] = addr
        return out

    async def _serving_once(self) -> bool:
        live = [n for n in self.nodes if n.running and n not in self.frozen]
        try:
            for node in live:
                if (await self._info(node, "cluster")).get("cluster_state") != "ok":
                    return False
            maps = [await self.owners(n) for n in live]
            if len(maps[0]) != SLOTS or any(m != maps[0] for m in maps[1:]):
                return False
            primaries = {self.by_addr(a) for a in maps[0].values()}
            for node in live:
                role = (await self._info(node, "replication")).get("role")
                if role == "slave":
                    info = await self._info(node, "replication")
                    if info.get("master_link_status") != "up":
                        return False
                    if info.get("master_sync_in_progress") != "0":
                        return False
            for p in primaries:
                async with p.client(timeout_s=2.0) as r:
                    # the replicas of this primary acknowledged every write (WAIT: a server-side
                    # wait, answered as soon as they have, 100 ms at most)
                    want = len(await self.replicas_of(p))
                    if want and int(await _command(r, "WAIT", want, 100)) < want:
                        return False
        except RedisError as exc:  # a node still loading or starting, a change in progress
            self.last_probe_error = exc
            return False
        return True

    async def until_serving(self, deadline_s: float = DEADLINE_S) -> None:
        """Await (probes under a deadline) every slot served, nodes agreeing, replicas in sync."""
        try:
            async with asyncio.timeout(deadline_s):
                while not await self._serving_once():  # each probe: round trips to the nodes
                    pass
        except TimeoutError as exc:
            raise AssertionError(
                f"the cluster did not serve within {deadline_s}s: {self.last_probe_error!r}"
            ) from exc

    def by_addr(self, addr: str) -> Node:
        return next(n for n in self.nodes if n.addr == addr)

    async def node_id(self, node: Node) -> str:
        async with node.client() as r:
            return _text(await _command(r, "CLUSTER", "MYID"))

    async def primary_of_slot(self, slot: int) -> Node:
        live = next(n for n in self.nodes if n.running and n not in self.frozen)
        return self.by_addr((await self.owners(live))[slot])

    async def primary_of(self, key: str) -> Node:
        return await self.primary_of_slot(key_slot(key))

    async def replicas_of(self, primary: Node) -> list[Node]:
        pid = await self.node_id(primary)
        async with primary.client() as r:
            lines = _text(await _command(r, "CLUSTER", "NODES")).splitlines()
        out = []
        for line in lines:
            words = line.split()
            if words[3] == pid and "fail" not in words[2]:
                out.append(self.by_addr(words[1].split("@")[0]))
        return out

    async def primary_nodes(self) -> list[Node]:
        live = next(n for n in self.nodes if n.running and n not in self.frozen)
        return sorted({self.by_addr(a) for a in (await self.owners(live)).values()},
                      key=lambda n: n.port)  # fmt: skip

    # -- faults ------------------------------------------------------------------------------

    def kill9(self, node: Node) -> None:
        """SIGKILL the node (its process is reaped; ``heal()`` restarts it on its port)."""
        os.kill(node.server.pid, signal.SIGKILL)
        node.server.stop()  # reaps it (SIGTERM to a dead process is harmless)

    def freeze(self, node: Node) -> None:
        os.kill(node.server.pid, signal.SIGSTOP)
        self.frozen.add(node)

    def thaw(self, node: Node) -> None:
        os.kill(node.server.pid, signal.SIGCONT)
        self.frozen.discard(node)

    async def failover(self, replica: Node) -> None:
        """``CLUSTER FAILOVER`` on ``replica`` (it is a primary when this returns, agreed by
        every node)."""
        async with replica.client() as r:
            await _command(r, "CLUSTER", "FAILOVER")
        try:
            async with asyncio.timeout(DEADLINE_S):
                while (await self._info(replica, "replication")).get("role") != "master":
                    pass  # a probe per round trip
        except TimeoutError as exc:
            tail = replica.server.log_path.read_text()[-2000:]
            raise AssertionError(f"{replica.addr} did not take over:\n{tail}") from exc
        await self.until_serving()

    async def begin_migration(self, slot: int, to: Node) -> Node:
        """Mark ``slot`` IMPORTING on ``to`` and MIGRATING on its owner; the owner."""
        source = await self.primary_of_slot(slot)
        sid, tid = await self.node_id(source), await self.node_id(to)
        async with to.client() as r:
            await _command(r, "CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
        async with source.client() as r:
            await _command(r, "CLUSTER", "SETSLOT", slot, "MIGRATING", tid)
        return source

    async def migrate_keys(
        self, slot: int, source: Node, to: Node, keys: list[str] | None = None
    ) -> None:
        """MIGRATE ``keys`` (default: every key of the slot) from ``source`` to ``to``."""
        async with source.client() as r:
            if keys is None:
                keys = [_text(k) for k in await _command(r, "CLUSTER", "GETKEYSINSLOT", slot, 1000)]
            if keys:
                await _command(r, "MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys)

    async def finish_migration(self, slot: int, to: Node) -> None:
        """``SETSLOT NODE`` on every live primary (the new owner first): the move is done."""
        tid = await self.node_id(to)
        order = [to] + [p for p in await self.primary_nodes() if p is not to]
        for node in order:
            async with node.client() as r:
                await _command(r, "CLUSTER", "SETSLOT", slot, "NODE", tid)
        await self.until_serving()

    async def move_slot(self, slot: int, to: Node) -> None:
        source = await self.begin_migration(slot, to)
        await self.migrate_keys(slot, source, to)
        await self.finish_migration(slot, to)

    # -- between tests -----------------------------------------------------------------------

    async def heal(self) -> None:
        """Restart killed nodes, thaw frozen ones, await a serving cluster."""
        for node in list(self.frozen):
            self.thaw(node)
        for node in self.nodes:
            if not node.running:
                node.server.start()
        await self.until_serving()

    async def flush(self) -> None:
        """Every primary emptied (replicated to its replicas) and its scripts flushed."""
        for p in await self.primary_nodes():
            async with p.client() as r:
                await _command(r, "FLUSHALL")
                await _command(r, "SCRIPT", "FLUSH")
        for n in self.nodes:  # a replica's script cache is its own
            async with n.client() as r:
                await _command(r, "SCRIPT", "FLUSH")


@contextlib.contextmanager
def running_cluster(root: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
