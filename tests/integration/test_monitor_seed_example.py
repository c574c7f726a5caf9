"""The seed's example runs for real: redis at localhost:6379, the simulated market, the console.

The example's ``DataFetcher()`` ticks every 5 s and simulated AAPL first closes above 150 at
tick 38; to keep the test short its market clock is compressed to 20 ms per tick (our own
``WallTickClock``) and the provider rate limit lifted; nothing else about the example changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import socket
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import ModuleType

import pytest

from marketpulse.infra.redis.embedded import EmbeddedRedis
from marketpulse.market.clock import WallTickClock
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.provider_guard import FetchPolicy

FAST = FetchPolicy(rate_per_s=1e9, burst=1_000_000)  # the example's fetches are not rate limited
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed_example.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LineWatch(io.StringIO):
    """A stdout that sets ``seen`` when a line containing ``needle`` is written."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = asyncio.Event()

    def write(self, s: str) -> int:
        if self.needle in s:
            self.seen.set()
        return super().write(s)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "taken"
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def redis_6379(tmp_path: Path) -> Iterator[None]:
    if not port_free(6379):
        pytest.skip("port 6379 is taken: the example hard-codes redis://localhost")
    with EmbeddedRedis(tmp_path, port=6379, durable=False).running():
        yield


async def test_seed_example_main_fires_the_aapl_alert(
    redis_6379: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_example = load_example()
    monkeypatch.setattr(
        seed_example, "DataFetcher", partial(DataFetcher, clock=WallTickClock(0.02), policy=FAST)
    )
    out = LineWatch("ALERT AAPL price_threshold above 150")
    before = asyncio.all_tasks()
    with contextlib.redirect_stdout(out):
        task = asyncio.create_task(seed_example.main())
        async with asyncio.timeout(30):
            await out.seen.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # main() was cancelled in its sleep: the background monitor is left, and is cancelled
        # here as asyncio.run would on the way out
        left = asyncio.all_tasks() - before
        assert {t.get_name() for t in left} >= {"stock-monitor"}
        for t in left:
            t.cancel()
        await asyncio.gather(*left, return_exceptions=True)
    assert task.cancelled()
    lines = [line for line in out.getvalue().splitlines() if line.startswith("ALERT")]
    assert lines[0].startswith("ALERT AAPL price_threshold above 150: value 15")
