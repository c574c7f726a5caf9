"""The real service as a subprocess, for browser tests.

``ServerProcess`` starts ``marketpulse serve`` with the given environment, waits for uvicorn to
say startup is complete (a line of its output, read by a thread: an event, not a timer), then
checks ``/readyz`` once. ``restart()`` stops it (SIGTERM) and starts it again on the same port.
The server's log is kept in a file for the test report.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY_LINE = "Application startup complete"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


@dataclass
class Console:
    """Console errors and uncaught page errors seen by a page."""

    errors: list[str] = field(default_factory=list)


def serve_command() -> list[str]:
    script = Path(sys.executable).with_name("marketpulse")
    if script.exists():
        return [str(script), "serve"]
    found = shutil.which("marketpulse")
    if found:
        return [found, "serve"]
    return [sys.executable, "-m", "marketpulse", "serve"]


class ServerProcess:
    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env = {**os.environ, **env, "MARKETPULSE_PORT": str(port)}
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        ready = threading.Event()
        self.proc = subprocess.Popen(
            serve_command(),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        proc = self.proc

        def pump() -> None:
            assert proc.stdout is not None
            with self.log_path.open("a") as log:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    if READY_LINE in line:
                        ready.set()
            ready.set()  # the process ended: stop waiting, the check below reports it

        self._reader = threading.Thread(target=pump, name="server-log", daemon=True)
        self._reader.start()
        if not ready.wait(timeout_s) or proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"server did not start; log:\n{self.log_tail()}")
        response = httpx.get(f"{self.base_url}/readyz", timeout=10)
        if response.status_code != 200:
            self.stop()
            raise RuntimeError(f"/readyz answered {response.status_code}: {response.text}")

    def stop(self, timeout_s: float = 20.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        if self._reader is not None:
            self._reader.join(timeout_s)
        return proc.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-n:])
        except OSError:
            return "(no log)"
