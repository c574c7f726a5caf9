"""The one place a redis-py client is built.

redis-py 8 raises ``MaxConnectionsError`` past the pool size instead of waiting, so the pool is a
``BlockingConnectionPool``. Its default retry can run a command twice after a lost reply: every
write of ours is idempotent (see the scripts), so that retry is safe. ``aclose()`` closes the
client's connections (a later command opens new ones).
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff


def make_client(url: str, max_connections: int = 64) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=False,
        health_check_interval=30,
        socket_keepalive=True,
    )
    client = Redis(
        connection_pool=pool,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries=3),
    )
    # the pool is this client's alone: aclose() disconnects it (redis-py leaves a pool passed
    # in open, so its sockets stayed open until garbage collection); it reconnects if used again
    client.auto_close_connection_pool = True
    return client
