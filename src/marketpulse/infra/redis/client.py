"""The one Redis boundary: ``RedisClient`` is how every feature talks to Redis.

It holds the connections of an instance and hands out what the stores need:

- plain commands (``call``) and pipelines (``pipeline``) on redis-py's pooled client;
- the bulk path (``pipeline_packed``): commands packed by hiredis (C, not redis-py's
  pure-Python packer) and pipelined on one bulk connection (a ``RedisMux`` of its own), the
  revaluation sweep's transport;
- Lua scripts (``script``) sent through the ``RedisMux``, one pipelined connection shared by
  every caller (the hot path of every analysis; its cost is in the README's benchmarks);
- pub/sub (``subscription``, ``publish``): the instance's ``EventHub``, one subscriber
  connection fanned out to local subscribers. Its loop runs in the lifespan (``run``).

Guarantee: whatever fails underneath (redis-py's ``RedisError`` family, an error reply, the
mux's or the hub's lost connection) surfaces as ``RedisUnavailable`` naming the server
(``url``, never the credentials), raised in this package (here, the mux, the hub) and nowhere
else, always ``from`` the original error. Like the redis-py retry, the mux may run a script a
second time after a lost reply: every script of ours is idempotent (see their headers).

redis-py 8 raises ``MaxConnectionsError`` past the pool size instead of waiting, so the pool is a
``BlockingConnectionPool``. Build one ``RedisClient`` per instance (``from_url``) and
``aclose()`` it at shutdown.

Redis Cluster, found, not configured: before its first command the client asks the server of
the URL (any node) ``INFO cluster`` (once; a refusal means one server). On ``cluster_enabled:1``
the scripts and the mux's commands go through ``cluster.ClusterMux`` (one pipelined connection
per primary, routed by slot: MOVED, ASK, TRYAGAIN, CLUSTERDOWN, NOSCRIPT per node, lost nodes),
``pipeline_packed`` too (a bulk connection per primary), and ``call`` and ``pipeline`` through
redis-py's ``RedisCluster`` (its replies parsed as on one server; a pipeline grouped by node;
a connection failure retried after a backoff, which redis-py does without). ``topology()``
gives the pub/sub hub the primaries, the node of a channel and the map's changes
(``cluster.Topology``). The surface the features use is the same on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    ClusterDownError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from marketpulse.errors import RedisUnavailable
from marketpulse.infra import transport_fix
from marketpulse.infra.redis.cluster import (
    RETRY_BACKOFF,
    ClusterMux,
    SingleNode,
    Topology,
    keys_slot,
)
from marketpulse.infra.redis.endpoint import Arg, pack
from marketpulse.infra.redis.mux import BULK_WINDOW, RedisMux
from marketpulse.infra.redis.outage import url_of
from marketpulse.infra.redis.pubsub import EventHub, Sink, Subscription
from marketpulse.infra.redis.scripts import ScriptFolder

Command = tuple[Arg, ...]

transport_fix.install()  # redis-py writes with writelines: a reset connection must fail as one


def make_client(url: str, max_connections: int = 64) -> Redis:
    """A redis-py client on a blocking pool whose commands are retried on a fresh connection
    when theirs fails or times out (safe: our writes are idempotent). The retry is the pool's:
    redis-py ignores a ``retry`` given to a client built on a pool, so it would not retry at
    all (``tests/integration/test_redis_boundary.py`` cuts the connections under it).

    A connection sends only what the service needs (``acl.py``): no ``CLIENT SETINFO`` and no
    ``CLIENT MAINT_NOTIFICATIONS`` probe, which a least-privilege ACL user would be refused
    (each refusal an entry in the server's ``ACL LOG``) on every connect."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=False,
        health_check_interval=30,
        socket_keepalive=True,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries=3),
        driver_info=None,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    client = Redis(connection_pool=pool)
    # the pool is this client's alone: aclose() disconnects it (redis-py leaves a pool passed
    # in open, so its sockets stayed open until garbage collection); it reconnects if used again
    client.auto_close_connection_pool = True
    return client


def make_cluster_client(
    url: str, max_connections: int = 64, nodes: Sequence[tuple[str, int]] = ()
) -> RedisCluster:
    """redis-py's cluster client for ``call`` and ``pipeline`` on a cluster: the URL's
    credentials and TLS, ``max_connections`` per node (``RedisClient`` waits for one rather
    than let redis-py raise ``MaxConnectionsError``), the same connection set-up as
    ``make_client`` (no ``CLIENT SETINFO``). ``nodes``: every node known so far, where it may
    start (else only the URL's node, which may be the one that is down)."""
    return RedisCluster.from_url(
        url,
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        max_connections=max_connections,
        decode_responses=False,
        health_check_interval=30,
        socket_keepalive=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries=3),
        driver_info=None,
    )


@contextlib.contextmanager
def _translated(what: str, url: str) -> Iterator[None]:
    """Turn a redis-py error raised inside the block into ``RedisUnavailable`` (naming ``url``)."""
    try:
        yield
    except RedisError as exc:
        raise RedisUnavailable(f"redis {what}: {exc}", url=url) from exc


class Script(functools.partial[Awaitable[Any]]):
    """One Lua script of a feature's ``lua/`` folder: ``await script(keys, args)`` runs it
    through the mux (EVALSHA, with an EVAL fallback when the server lacks it) and raises
    ``RedisUnavailable`` (the mux translates). A ``partial`` of the mux's ``evalsha`` (C), so
    the hot path pays no Python frame for the indirection."""

    @property
    def sha(self) -> str:
        return str(self.args[0])

    @property
    def source(self) -> str:
        return str(self.args[1])


class RedisClient:
    """The instance's Redis: see the module docstring. Not thread-safe (one per event loop)."""

    def __init__(
        self, redis: Redis, *, source_url: str | None = None, max_connections: int = 64
    ) -> None:
        self.redis = redis  # the pooled client (of the URL's node); stores never use it directly
        self.url = url_of(redis)  # for logs and errors: never the credentials
        self.mux = RedisMux.for_client(redis)
        self.mux.divert = True  # until the topology is known (``_decide``)
        self.mux.decide = self._decide
        self.hub = EventHub(redis)
        self._source_url = source_url  # with its credentials: for the cluster client only
        self._max_connections = max_connections
        self._topology: Topology | None = None
        self._deciding: asyncio.Task[None] | None = None
        self._cluster: ClusterMux | None = None
        self._cluster_redis: RedisCluster | None = None
        self._cluster_slots: asyncio.Semaphore | None = None
        self._bulk: RedisMux | None = None  # pipeline_packed's connection (one server)

    @classmethod
    def from_url(cls, url: str, max_connections: int = 64) -> RedisClient:
        return cls(
            make_client(url, max_connections), source_url=url, max_connections=max_connections
        )

    # -- topology ----------------------------------------------------------------------------

    async def topology(self) -> Topology:
        """One server's or the cluster's topology (``cluster.Topology``), known after one
        question to the server; raises ``RedisUnavailable`` while it cannot be asked."""
        await self._decide()
        assert self._topology is not None
        return self._topology

    @property
    def is_cluster(self) -> bool | None:
        """True on a cluster, False on one server, None before the first command."""
        return None if self._topology is None else self._topology.cluster

    async def _decide(self) -> None:
        if self._topology is not None:
            return
        task = self._deciding
        if task is None or task.done():  # one question for every caller waiting on it
            task = self._deciding = asyncio.ensure_future(self._ask_topology())
        await asyncio.shield(task)

    async def _ask_topology(self) -> None:
        try:  # bounded as a mux call is: the pooled client has no reply timeout of its own
            async with asyncio.timeout(self.mux.timeout_s):
                info: Any = await self.redis.execute_command("INFO", "cluster")  # type: ignore[no-untyped-call]
        except ResponseError:
            info = {}  # refused (a proxy, an ACL without INFO): served as one server
        except (RedisError, TimeoutError) as exc:
            raise RedisUnavailable(f"redis INFO: {exc or 'no reply'}", url=self.url) from exc
        if not (isinstance(info, dict) and int(info.get("cluster_enabled", 0) or 0) == 1):
            self._topology = SingleNode(self.mux.endpoint)
            self.mux.divert = False  # the plain hot path from now on
            return
        cluster = ClusterMux(self.mux.endpoint, timeout_s=self.mux.timeout_s)
        try:
            await cluster.refresh()
        except BaseException:
            await cluster.aclose()
            raise
        url = self._source_url or self.mux.endpoint.url_with_credentials()
        self._cluster_redis = make_cluster_client(url, self._max_connections, cluster.nodes)
        self._cluster_slots = asyncio.Semaphore(self._max_connections)
        self._cluster = cluster
        self.mux.cluster = cluster
        self._topology = cluster

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the pub/sub connection up until ``stop`` (a lifespan task)."""
        await self.hub.run(stop)

    async def aclose(self) -> None:
        task, self._deciding = self._deciding, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self.mux.aclose()
        if self._bulk is not None:
            await self._bulk.aclose()
        if self._cluster is not None:
            await self._cluster.aclose()
        if self._cluster_redis is not None:
            await self._cluster_redis.aclose()
        await self.redis.aclose()

    # -- commands ----------------------------------------------------------------------------

    async def call(self, *args: Arg, **options: Any) -> Any:
        """One command on the pooled client; its reply as redis-py parses it (``options``
        steer redis-py's reply parser, e.g. ``parse_detail=True`` for a ranged XPENDING).

        A failed or silent connection costs redis-py's retry on a fresh one (the pool's, see
        ``make_client``): the pool hands out its idle connections last in, first out, so one
        that died with a restarted server can sit under the live ones and fail the first call
        that reaches it. Like any retry, this may run a command twice: ours are idempotent or
        at least once by contract."""
        if self._topology is None:
            await self._decide()
        if self._cluster_redis is not None:
            return await self._cluster_call(args, options)
        with _translated(str(args[0]), self.url):
            return await self.redis.execute_command(*args, **options)  # type: ignore[no-untyped-call]

    async def _cluster_call(self, args: tuple[Arg, ...], options: dict[str, Any]) -> Any:
        """``call`` on a cluster: redis-py's cluster client (its own MOVED/ASK handling), one
        of ``max_connections`` per node at a time, and a lost node or a cluster that is down
        retried after a backoff (redis-py's retries come back to back)."""
        assert self._cluster_redis is not None and self._cluster_slots is not None
        attempt = 0
        while True:
            try:
                async with self._cluster_slots:
                    return await self._cluster_redis.execute_command(*args, **options)
            except (
                RedisConnectionError,
                RedisTimeoutError,
                ClusterDownError,
                TryAgainError,
            ) as exc:
                attempt += 1
                if attempt > 3:
                    raise RedisUnavailable(f"redis {args[0]!s}: {exc}", url=self.url) from exc
                await asyncio.sleep(RETRY_BACKOFF.delay(attempt))
            except (RedisError, RedisClusterException) as exc:
                raise RedisUnavailable(f"redis {args[0]!s}: {exc}", url=self.url) from exc

    async def ping(self) -> None:
        await self.call("PING")

    async def pipeline(
        self, commands: Sequence[Command], *, transaction: bool = False
    ) -> list[Any]:
        """The replies of ``commands`` sent in one round trip (``MULTI``/``EXEC`` around them
        with ``transaction``); an error reply raises. On a cluster the commands are grouped by
        node; a transaction's keys must share one slot (``CrossSlotKeys`` names them)."""
        if self._topology is None:
            await self._decide()
        if self._cluster_redis is not None:
            return await self._cluster_pipeline(commands, transaction)
        with _translated("pipeline", self.url):
            async with self.redis.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute())

    async def _cluster_pipeline(self, commands: Sequence[Command], transaction: bool) -> list[Any]:
        assert self._cluster_redis is not None
        if transaction:
            keys_slot([c[1] for c in commands if len(c) > 1], "transaction")
        try:
            async with self._cluster_redis.pipeline(transaction=transaction) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute())
        except (RedisError, RedisClusterException) as exc:
            raise RedisUnavailable(f"redis pipeline: {exc}", url=self.url) from exc

    async def pipeline_packed(
        self, commands: Sequence[Command], *, paced: bool = False
    ) -> list[Any]:
        """The bulk path: ``commands`` packed by hiredis and written at once, replies read in
        order, on the instance's bulk connection (a mux of its own: concurrent bulk callers
        pipeline on it instead of taking a connection each). ``paced``: commands that each
        hold Redis for a while (the sweep's script calls over 100 sessions): at most
        ``BULK_WINDOW`` of them in flight on a server (on each primary of a cluster), so
        another client waits for a few of them, not for all that was sent. An error reply
        comes back in the list as a ``RedisUnavailable`` (not raised); a failed connection
        raises it, after the whole list is sent again on a fresh connection (like redis-py's
        own retry this may run a command twice: ours are idempotent). On a cluster: each
        command on its slot's primary (a bulk connection per primary, ``ClusterMux``)."""
        if self._topology is None:
            await self._decide()
        if self._cluster is not None:
            return await self._cluster.execute_many(commands, paced=paced)
        bulk = self._bulk
        if bulk is None or bulk.closed:
            bulk = self._bulk = RedisMux(
                self.mux.endpoint, timeout_s=self.mux.timeout_s, retries=1, window=BULK_WINDOW
            )
        replies = await bulk.send_many([pack(c) for c in commands], paced=paced)
        return [
            RedisUnavailable(f"redis: {r}", url=self.url) if type(r) is hiredis.ReplyError else r
            for r in replies
        ]

    # -- scripts -----------------------------------------------------------------------------

    def script(self, folder: ScriptFolder, name: str) -> Script:
        lua = folder.load(name)
        return Script(self.mux.evalsha, lua.sha, lua.source)

    # -- pub/sub -----------------------------------------------------------------------------

    async def publish(self, channel: str, message: str | bytes) -> int:
        """PUBLISH; the number of connections that received it."""
        return int(await self.call("PUBLISH", channel, message))

    @contextlib.asynccontextmanager
    async def subscription(
        self, channel: str, sink: Sink | None = None
    ) -> AsyncIterator[Subscription]:
        """A subscription to ``channel`` through the instance's hub, confirmed by Redis before
        the context is entered. Raises ``RedisUnavailable`` when the hub is down."""
        async with self.hub.subscription(channel, sink=sink) as sub:
            yield sub
