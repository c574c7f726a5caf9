"""Shared fixtures: a real redis-server for the whole test session, a clean database per test.

The run is hermetic: ``user_caches`` points ``XDG_CACHE_HOME`` (for subprocesses, and for a
yfinance imported later) and yfinance's caches at the run's temporary folder before any test,
so nothing a test reads or writes lives in the user's home and no run depends on an earlier one.
``no_dotenv`` likewise keeps a developer's ``.env`` (read from the working directory) out of every
``Settings`` the tests and the processes they start build.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from marketpulse.config import ENV_FILE_VAR
from marketpulse.infra.redis.client import RedisClient, make_client
from marketpulse.infra.redis.embedded import EmbeddedRedis, free_port
from marketpulse.infra.redis.mux import RedisMux
from marketpulse.observability.redaction import forget_secrets
from support.cluster import LocalCluster, running_cluster
from support.processes import Proc
from support.tcp_proxy import TcpProxy


@pytest.fixture(scope="session", autouse=True)
def user_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty cache folder for the run, in place of ``~/.cache``."""
    root = Path(tmp_path_factory.mktemp("xdg-cache"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        yf = sys.modules.get("yfinance")  # imported while collecting: it read the old folder
        if yf is not None:
            yf.set_tz_cache_location(str(root / "py-yfinance"))  # before any test uses it
        yield root


@pytest.fixture(scope="session", autouse=True)
def no_dotenv() -> Iterator[None]:
    """No dotenv file for the run: ``MARKETPULSE_ENV_FILE`` empty, inherited by subprocesses
    (a test of ``.env`` itself sets it back)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_FILE_VAR, "")
        yield


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")), durable=False)
    with server.running():
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """URL of the test Redis, flushed before the test."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
        client.script_flush()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real Redis Cluster on loopback for the run (3 primaries, 3 replicas; started by the
    first test that asks for it, about 2.5 s): ``support/cluster.py``. Built with ``redis-cli
    --cluster create``: skipped, saying so, where only valkey-server (no redis-cli) is found."""
    if shutil.which("redis-cli") is None:
        pytest.skip("no redis-cli to create the test cluster (apt-get install redis-tools)")
    with running_cluster(Path(tmp_path_factory.mktemp("redis-cluster"))) as cluster:
        yield cluster


@pytest.fixture
async def cluster(redis_cluster: LocalCluster) -> LocalCluster:
    """The run's cluster, serving (what an earlier test killed, froze or failed over is
    healed: the topology may differ) and emptied before the test."""
    await redis_cluster.heal()
    await redis_cluster.flush()
    return redis_cluster


@pytest.fixture(params=["standalone", pytest.param("cluster", marks=pytest.mark.cluster)])
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """A ``MARKETPULSE_REDIS_URL`` for each topology, emptied first: the test Redis, then one
    node of the test cluster (a test taking it runs on both; the service finds out which)."""
    if request.param == "cluster":
        cluster: LocalCluster = request.getfixturevalue("cluster")
        return cluster.url
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def redis_proxy(redis_server: EmbeddedRedis, redis_url: str) -> AsyncIterator[TcpProxy]:
    """A fault-injecting loopback proxy to the test Redis (flushed first, as ``redis_url``):
    point a client at ``redis_proxy.url()``."""
    async with TcpProxy(redis_server.port) as proxy:
        yield proxy


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = make_client(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_mux(redis_client: Redis) -> AsyncIterator[RedisMux]:
    """The pipelined connection of the hot path, to the same database as ``redis_client``."""
    mux = RedisMux.for_client(redis_client)
    try:
        yield mux
    finally:
        await mux.aclose()


LEAK_GRACE_S = 2.0  # what a test's teardown may still be finishing when the check starts


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test but the browser ones (sync Playwright runs no asyncio loop of ours) gets the
    leak check."""
    for item in items:
        names = getattr(item, "fixturenames", None)
        if item.get_closest_marker("e2e") is None and names is not None:
            names.insert(0, "no_leaked_tasks")  # set up first, torn down last


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves a task running on the shared event loop: every task has an
    owner that awaits it (a task still finishing its cancellation gets ``LEAK_GRACE_S``)."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    new = {t for t in asyncio.all_tasks() - before if t is not current and not t.done()}
    if new:
        _, pending = await asyncio.wait(new, timeout=LEAK_GRACE_S)
        if pending:
            for task in pending:
                task.cancel()
            names = sorted(f"{t.get_name()}: {t.get_coro()!r}" for t in pending)
            pytest.fail("the test leaked tasks:\n" + "\n".join(names))


@pytest.fixture
async def redis_boundary(redis_url: str) -> AsyncIterator[RedisClient]:
    """The service's Redis boundary on the test database, its pub/sub hub running (what the
    stores take); assert on the raw state through ``redis_client``."""
    client = RedisClient.from_url(redis_url)
    stop = asyncio.Event()
    hub = asyncio.ensure_future(client.run(stop))
    try:
        yield client
    finally:
        stop.set()
        await hub
        await client.aclose()


@pytest.fixture
async def dead_redis() -> AsyncIterator[RedisClient]:
    """A Redis boundary to a loopback port where nothing listens."""
    client = RedisClient.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own (not durable), which the test may stop, freeze
    (SIGSTOP) and restart on the same port."""
    server = EmbeddedRedis(tmp_path / "own-redis", durable=False)
    server.start()
    try:
        yield server
    finally:
        if server.pid:
            os.kill(server.pid, signal.SIGCONT)  # in case the test froze it
        server.stop()


@pytest.fixture
async def procs() -> AsyncIterator[list[Proc]]:
    """Service processes a test starts (appended as started); any still running at the end is
    SIGKILLed."""
    started: list[Proc] = []
    yield started
    for p in started:
        await p.kill(signal.SIGKILL)


@pytest.fixture(autouse=True)
def _no_secret_from_another_test() -> Iterator[None]:
    """The log's registered secrets (channel URLs' pieces, observability/redaction.py) are
    process-wide: each test starts and ends without another test's."""
    forget_secrets()
    yield
    forget_secrets()
