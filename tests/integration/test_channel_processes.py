"""Named channels with real ``marketpulse serve`` processes on the suite's Redis.

- At least once across a crash: the process delivering on an Apprise channel is SIGKILLed while
  its receiver holds the request; after a restart every fire is delivered at least once, and
  every duplicate carries the same key (the fire id, in the message body).
- No channel secret (an Apprise URL's password and path token, a webhook's query token, the
  SMTP password) appears in the log of a run at DEBUG, deliveries failing included, or in any
  answer of the API.

Fires come from ``AAPL price above 0`` alerts on the simulated market (true at every
observation: each fires once). Every wait is for a log line, a request or an answer under a
deadline.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
from redis.asyncio import Redis

from marketpulse.infra.redis import keys as keys_
from marketpulse.infra.redis.embedded import free_port
from support.channel_receivers import JsonReceiver, key_of
from support.environ import without_settings
from support.processes import Proc, start_serve

DEADLINE = 30.0


def env_for(redis_url: str, **more: str) -> dict[str, str]:
    return {
        **without_settings(),
        "MARKETPULSE_REDIS_URL": redis_url,
        "MARKETPULSE_DATA_SOURCE": "simulated",
        "MARKETPULSE_MARKET_INTERVAL": "0.5",
        "MARKETPULSE_WATCHLIST": "AAPL",
        "MARKETPULSE_METRIC_DELAY": "0",
        "MARKETPULSE_ALERT_RECLAIM_S": "1",
        **more,
    }


def alert(i: int, channels: list[str]) -> dict[str, object]:
    return {"id": f"ch{i}", "symbol": "AAPL", "alert_type": "price_threshold", "threshold": 0,
            "comparison": "above", "channels": channels}  # fmt: skip


async def test_every_fire_is_delivered_after_a_kill_mid_delivery_with_one_key_each(
    redis_url: str, redis_client: Redis, tmp_path: Path, procs: list[Proc]
) -> None:
    port = free_port()
    env = env_for(redis_url, MARKETPULSE_CHANNEL_TIMEOUT_S="60")
    log_path = tmp_path / "service.log"
    receiver = JsonReceiver(hold=True)  # takes each request and answers none yet
    url = await receiver.start()
    try:
        first = await start_serve(env, port, log_path)
        procs.append(first)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            r = await http.post("/api/channels", json={"name": "tg", "kind": "apprise",
                                                       "target": url})  # fmt: skip
            assert r.status_code == 201, r.text
            await first.wait_for_line("channel tg delivery ready", DEADLINE)
            for i in range(3):
                assert (await http.post("/api/alerts", json=alert(i, ["tg"]))).status_code == 201
            async with asyncio.timeout(DEADLINE):
                held = await receiver.received.get()  # a delivery in flight, held
        await first.kill(signal.SIGKILL)  # mid-delivery: nothing was acknowledged
        receiver.release()  # the receiver answers from now on

        second = await start_serve(env, port, log_path)
        procs.append(second)
        held_key = key_of(held["message"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            answered: list[str | None] = []
            async with asyncio.timeout(DEADLINE):
                while True:  # each answer is an event; done when every fire is in, and the
                    # one held when the first process died came again from the second
                    answered.append(key_of((await receiver.answered.get())["message"]))
                    rows = (await http.get("/api/alerts/history")).json()["history"]
                    fires = {row["id"] for row in rows}
                    if len(fires) == 3 and fires <= set(answered) and answered.count(held_key) > 1:
                        break
        # a graceful stop lets a delivery in flight record itself and acknowledge
        await second.kill(signal.SIGTERM)
        await second.wait_for_line("Application shutdown complete", DEADLINE)
    finally:
        await receiver.aclose()
    keys = receiver.keys
    assert set(keys) == fires  # every body carries a fire's own key, and every fire arrived
    assert held_key in fires and keys.count(held_key) >= 2  # again, with the same key
    for fire_id in fires:  # each recorded as delivered on the channel, nothing left pending
        assert b"tg" in await redis_client.hgetall(keys_.alert_deliveries(fire_id))
    pending = await redis_client.xpending(keys_.ALERT_OUTBOX, keys_.alert_delivery_group("tg"))
    assert pending["pending"] == 0


async def test_no_channel_secret_in_the_log_or_an_answer(
    redis_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    port, dead = free_port(), free_port()
    password, token, query = "S3cretPassw0rd", "tok3nSegmentXYZ", "QueryT0kenValue9"
    smtp_password = "SmtpPassw0rdSecret"
    env = env_for(
        redis_url,
        MARKETPULSE_LOG_LEVEL="DEBUG",
        MARKETPULSE_SMTP_HOST="127.0.0.1",
        MARKETPULSE_SMTP_PORT=str(dead),  # nothing listens: e-mail fails
        MARKETPULSE_SMTP_USER="mp",
        MARKETPULSE_SMTP_PASSWORD=smtp_password,
        MARKETPULSE_CHANNEL_TIMEOUT_S="5",
    )
    log_path = tmp_path / "service.log"
    receiver = JsonReceiver()
    await receiver.start()
    answers: list[str] = []
    rows = [
        {"name": "app", "kind": "apprise",
         "target": f"json://mp:{password}@127.0.0.1:{receiver.port}/{token}"},
        {"name": "hook", "kind": "webhook",
         "target": f"http://127.0.0.1:{dead}/hook?token={query}"},
        {"name": "mail", "kind": "email", "target": ["ops@example.com"]},
    ]  # fmt: skip
    try:
        proc = await start_serve(env, port, log_path)
        procs.append(proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for row in rows:
                r = await http.post("/api/channels", json=row)
                assert r.status_code == 201, r.text
                answers.append(r.text)
            r = await http.post("/api/alerts", json=alert(0, ["app", "hook", "mail"]))
            assert r.status_code == 201
            async with asyncio.timeout(DEADLINE):
                await receiver.answered.get()  # the Apprise channel delivered the fire
            await proc.wait_for_line("alert delivery on hook failed for fire", DEADLINE)
            await proc.wait_for_line("alert delivery on mail failed for fire", DEADLINE)
            for name in ("app", "hook", "mail"):
                r = await http.post(f"/api/channels/{name}/test")
                answers.append(r.text)
                assert r.json()["ok"] is (name == "app"), r.text
                answers.append((await http.get(f"/api/channels/{name}")).text)
            answers.append((await http.get("/api/channels")).text)
            answers.append((await http.get("/api/alerts/history")).text)
        await proc.kill(signal.SIGTERM)
    finally:
        await receiver.aclose()
    log = log_path.read_text()
    assert "alert delivery on hook failed" in log  # the lines that could have held them
    for secret in (password, token, query, smtp_password):
        assert secret not in log, f"{secret} in the log"
        for answer in answers:
            assert secret not in answer, f"{secret} in an answer: {answer}"
