"""Shared fixtures: a real redis-server for the whole test session, a clean database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from marketpulse.infra.redis.client import make_client
from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.infra.redis.mux import RedisMux


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
