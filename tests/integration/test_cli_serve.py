"""The real service started from the command line: ``marketpulse serve`` with flags only
listens where the flags say; the root ``main.py`` (the pip path's ``python main.py``) takes the
same flags and reads ``.env`` in its working directory under them."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from marketpulse.config import ENV_FILE_VAR
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.embedded import free_port
from support.environ import without_settings

READY_LINE = "Application startup complete"
MAIN_PY = Path(__file__).resolve().parents[2] / "main.py"


def marketpulse() -> list[str]:
    script = Path(sys.executable).with_name("marketpulse")
    if script.exists():
        return [str(script)]
    found = shutil.which("marketpulse")
    return [found] if found else [sys.executable, "-m", "marketpulse"]


@contextmanager
def serving(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Iterator[list[str]]:
    """Start the command, wait for uvicorn's ready line (read by a thread: an event, not a
    timer), yield its output lines so far; on exit SIGTERM it and check it shut down cleanly."""
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ready = threading.Event()
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if READY_LINE in line:
                ready.set()
        ready.set()  # it exited: stop waiting; the assertions below say what happened

    reader = threading.Thread(target=pump, name="serve-log", daemon=True)
    reader.start()
    try:
        assert ready.wait(60), "".join(lines)
        assert proc.poll() is None, "".join(lines)
        yield lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        reader.join(30)
    log = "".join(lines)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
    assert proc.returncode in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log


def assert_ready(port: int) -> None:
    r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
    assert r.status_code == 200, r.text


def test_serve_flags_override_the_environment(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = without_settings()
    env |= {"MARKETPULSE_PORT": str(free_port()), "MARKETPULSE_DATA_SOURCE": "nse"}  # overridden
    argv = [
        *marketpulse(), "serve", "--port", str(port), "--redis-url", redis_url,
        "--data-source", "simulated", "--data-dir", str(tmp_path), "--log-level", "info",
    ]  # fmt: skip
    with serving(argv, env) as lines:
        assert_ready(port)
    log = "".join(lines)
    assert f"marketpulse on http://127.0.0.1:{port} (data source simulated)" in log
    assert not (tmp_path / "redis").exists()  # --redis-url given: no embedded Redis


def test_main_py_reads_dotenv_under_the_environment_and_its_flags(
    redis_url: str, tmp_path: Path
) -> None:
    """A user's ``.env`` (what ``cp .env.example .env`` then an edit gives): its Redis is used
    (no embedded one starts), the environment wins over its data source, a flag over its port."""
    port = free_port()
    (tmp_path / ".env").write_text(
        f"MARKETPULSE_REDIS_URL={redis_url}\n"
        f"MARKETPULSE_PORT={free_port()}\n"  # overridden by --port
        "MARKETPULSE_DATA_SOURCE=nse\n"  # overridden by the environment
        f"MARKETPULSE_DATA_DIR={tmp_path / 'data'}\n"
        "MARKETPULSE_WATCHLIST=none\n"
    )
    env = without_settings()
    del env[ENV_FILE_VAR]  # the user's case: ./.env is read
    env["MARKETPULSE_DATA_SOURCE"] = "simulated"
    argv = [sys.executable, str(MAIN_PY), "--port", str(port), "--log-level", "info"]
    with serving(argv, env, cwd=tmp_path) as lines:
        assert_ready(port)
        added = httpx.post(
            f"http://127.0.0.1:{port}/api/symbols", json={"symbol": "IBM"}, timeout=10
        )
        assert added.status_code == 201, added.text
    log = "".join(lines)
    assert f"marketpulse on http://127.0.0.1:{port} (data source simulated)" in log
    assert "embedded redis-server" not in log
    assert not (tmp_path / "data" / "redis").exists()
    client = redis.Redis.from_url(redis_url)  # .env's Redis is the one written to
    try:
        assert client.smembers(keys.SYMBOLS) == {b"IBM"}
    finally:
        client.close()


def test_main_py_help_lists_the_flags(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(MAIN_PY), "--help"],
        env=without_settings(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: main.py ")
    text = " ".join(done.stdout.split())
    for flag in ("--host", "--port", "--data-source", "--redis-url", "--market-interval"):
        assert flag in text
    assert "--log-level" in text and "--data-dir" in text
