"""The service and its workers as real processes, for the crash and deploy tests.

``Proc`` starts ``python -m marketpulse <command>`` with the given environment, copies its
output (stdout and stderr) into a log file and a list of lines, and is ready when a line
containing ``ready_line`` appears (an event, not a timer). ``serve`` processes then answer
``/readyz``. ``kill(sig)`` sends a signal and awaits the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import httpx

SERVE_READY = "Application startup complete"
WORKER_READY = "run worker ready"


class Proc:
    def __init__(self, command: str, env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._seen = asyncio.Condition()
        self.ready_at = 0.0  # time.monotonic() when the ready line arrived

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, ready_line: str, within: float = 60.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "marketpulse",
            self.command,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._pump = asyncio.ensure_future(self._read(self.proc))
        try:
            await self.wait_for_line(ready_line, within)
        except BaseException:
            await self.kill(signal.SIGKILL)
            raise
        self.ready_at = time.monotonic()

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        with self.log_path.open("a") as log:
            log.write(f"--- {self.command} pid {proc.pid}\n")
            while line := await proc.stdout.readline():
                text = line.decode(errors="replace")
                log.write(text)
                log.flush()
                async with self._seen:
                    self.lines.append(text)
                    self._seen.notify_all()
        async with self._seen:
            self._seen.notify_all()

    async def wait_for_line(self, needle: str, within: float) -> str:
        start = 0
        async with asyncio.timeout(within), self._seen:
            while True:
                for line in self.lines[start:]:
                    if needle in line:
                        return line
                start = len(self.lines)
                if self._pump is not None and self._pump.done():
                    raise AssertionError(f"{self.command} exited before {needle!r}:\n{self.tail()}")
                await self._seen.wait()

    async def kill(self, sig: int, within: float = 30.0) -> int:
        proc = self.proc
        assert proc is not None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        async with asyncio.timeout(within):
            code = await proc.wait()
            if self._pump is not None:
                await self._pump
        return code

    def tail(self, n: int = 40) -> str:
        return "".join(self.lines[-n:])


async def start_serve(env: dict[str, str], port: int, log_path: Path) -> Proc:
    proc = Proc("serve", {**env, "MARKETPULSE_PORT": str(port)}, log_path)
    await proc.start(SERVE_READY)
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"http://127.0.0.1:{port}/readyz")
        assert r.status_code == 200, r.text
    return proc


async def start_worker(env: dict[str, str], log_path: Path) -> Proc:
    proc = Proc("worker", env, log_path)
    await proc.start(WORKER_READY)
    return proc
