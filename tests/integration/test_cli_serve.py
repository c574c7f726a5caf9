"""The real ``marketpulse serve`` started with flags only: it listens where the flags say."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from marketpulse.infra.redis.embedded import free_port

READY_LINE = "Application startup complete"


def marketpulse() -> list[str]:
    script = Path(sys.executable).with_name("marketpulse")
    if script.exists():
        return [str(script)]
    found = shutil.which("marketpulse")
    return [found] if found else [sys.executable, "-m", "marketpulse"]


def test_serve_flags_override_the_environment(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETPULSE_")}
    env |= {"MARKETPULSE_PORT": str(free_port()), "MARKETPULSE_DATA_SOURCE": "nse"}  # overridden
    argv = [
        *marketpulse(), "serve", "--port", str(port), "--redis-url", redis_url,
        "--data-source", "simulated", "--data-dir", str(tmp_path), "--log-level", "info",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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
        r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert r.status_code == 200, r.text
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
    assert f"marketpulse on http://127.0.0.1:{port} (data source simulated)" in log
    assert not (tmp_path / "redis").exists()  # --redis-url given: no embedded Redis
