"""The seed's example runs as written, as a real process, and ends by itself.

Only its settings change, through the environment as a user would set them: the test Redis
(``MARKETPULSE_REDIS_URL``), the simulated market with seed 43 (simulated AAPL closes at 133.8,
143.5, 147.1, then 152.8 at tick 3, and stays above 150 for the next 50 ticks), a tick every
0.25 s, and a run of 5 s instead of an hour (``MARKETPULSE_EXAMPLE_SECONDS``). The test waits
for the process to exit under a deadline; it never sleeps.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import cast

from redis.asyncio import Redis

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from support.environ import without_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed_example.py"


async def run_example(env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(90):  # a deadline for a process that should take ~6 s
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def example_env(redis_url: str) -> dict[str, str]:
    env = without_settings()
    return env | {
        "MARKETPULSE_REDIS_URL": redis_url,
        "MARKETPULSE_DATA_SOURCE": "simulated",
        "MARKETPULSE_SEED": "43",
        "MARKETPULSE_MARKET_INTERVAL": "0.25",
        "MARKETPULSE_EXAMPLE_SECONDS": "5",
    }


async def test_the_seed_example_fires_the_aapl_alert_and_exits_0(
    redis_url: str, redis_client: Redis
) -> None:
    code, out, err = await run_example(example_env(redis_url))
    assert code == 0, err
    assert "Traceback" not in err, err
    alerts = [line for line in out.splitlines() if line.startswith("ALERT")]
    assert alerts == [alerts[0]]  # once per crossing: AAPL stays above 150 afterwards
    assert alerts[0].startswith("ALERT AAPL price_threshold above 150: value 152.8 ")

    # what the example leaves in Redis: its two conditions, its symbols, and the history
    assert await redis_client.hlen(keys.ALERTS) == 2
    watched = cast(set[bytes], await redis_client.smembers(keys.SYMBOLS))
    assert watched == {b"AAPL", b"GOOGL", b"TCS.NS", b"INFY.NS"}
    rows = cast(
        list[tuple[bytes, dict[bytes, bytes]]], await redis_client.xrange(keys.ALERT_HISTORY)
    )
    assert len(rows) == 1
    fired = FiredAlert.model_validate_json(rows[0][1][b"alert"])
    assert (fired.symbol, fired.threshold, fired.value) == ("AAPL", 150.0, 152.78)
    # delivered from the outbox by the monitor's delivery loop, recorded with its time
    assert fired.channels == []  # the history entry is the fire as decided
    delivered = await redis_client.hgetall(keys.alert_deliveries(fired.id))
    assert list(delivered) == [b"console"]
    assert await redis_client.exists(keys.quote_cache("INFY.NS"))  # CacheManager() was used


async def test_run_twice_the_second_run_reports_an_alert_already_true(
    redis_url: str, redis_boundary: RedisClient, redis_client: Redis
) -> None:
    """The second run's monitor finds its cursor past its own (new) clock's ticks: no tick
    evaluates the alert added between the runs; it is evaluated at once, against the quote
    the first run cached, and reported."""
    code, _, err = await run_example(example_env(redis_url))
    assert code == 0, err
    # added between the runs, by a manager without the quote cache: nothing evaluates it here
    between = AlertManager(RedisAlertStore(redis_boundary), [])
    await between.add_alert(
        AlertCondition(
            symbol="TCS.NS",
            alert_type=AlertType.PRICE_THRESHOLD,
            threshold=0.01,
            comparison="above",
        )
    )
    assert await between.history("TCS.NS") == []

    code, out, err = await run_example(example_env(redis_url))
    assert code == 0, err
    assert "Traceback" not in err, err
    tcs = [line for line in out.splitlines() if line.startswith("ALERT TCS.NS price_threshold")]
    assert len(tcs) == 1, out
    assert tcs[0].startswith("ALERT TCS.NS price_threshold above 0.01: value ")
    fired = await between.history("TCS.NS")
    assert [f.alert_type for f in fired] == [AlertType.PRICE_THRESHOLD]  # fired once
