"""The WebSocket protocol (docs/contracts.md), message by message, against a real server and
Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from redis.asyncio import Redis

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.pubsub import QUEUE_LIMIT
from marketpulse.infra.ws.limits import WsLimits
from marketpulse.sessions.metrics import METRIC_NAMES
from support.harness import Server, serve, settings_for

HOLDINGS = {"AAPL": 100, "GOOGL": 50, "MSFT": 75}
RESULT_FIELDS = {"type", "ticker", "metric", "value", "timestamp", "run_id", "basis_version", "id"}


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[Server]:
    async with serve(settings_for(redis_url)) as s:
        yield s


async def test_snapshot_first_then_five_results_then_complete(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    c = await server.connect(sid, token)
    assert c.log[0]["type"] == "session" and c.log[0]["state"]["session_id"] == sid
    await c.send({"action": "analyze", "ticker": "AAPL"})
    started = await c.next("analysis_started")
    assert set(started) == {"type", "ticker", "run_id", "basis_version", "timestamp"}
    done = await c.next("analysis_complete")
    assert done == {"type": "analysis_complete", "ticker": "AAPL", "run_id": started["run_id"]}
    results = c.of("analysis_result")
    assert sorted(r["metric"] for r in results) == sorted(METRIC_NAMES)
    for r in results:
        assert RESULT_FIELDS <= set(r) <= RESULT_FIELDS | {"details"}
        assert r["run_id"] == started["run_id"] and r["basis_version"] == started["basis_version"]
    # complete comes after every result
    kinds = [m["type"] for m in c.log]
    assert kinds.index("analysis_complete") > max(
        i for i, k in enumerate(kinds) if k == "analysis_result"
    )
    state = (
        await server.http.get(f"/api/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
    ).json()
    assert {r["id"] for r in state["analysis_results"]} == {r["id"] for r in results}
    assert state["current_analysis"]["status"] == "complete"
    await c.close()


async def test_analyze_running_ticker_is_a_noop_answering_the_run_id(redis_url: str) -> None:
    async with serve(settings_for(redis_url, metric_delay="0.5")) as server:
        sid, token, _ = await server.create_session(HOLDINGS)
        c = await server.connect(sid, token)
        await c.send({"action": "analyze", "ticker": "AAPL"})
        first = await c.next("analysis_started")
        await c.send({"action": "analyze", "ticker": "AAPL"})
        again = await c.next("analysis_started")
        assert again["run_id"] == first["run_id"]
        await c.next("analysis_complete")
        assert len(c.of("analysis_result")) == 5
        assert not c.of("analysis_cancelled")
        await c.close()


async def test_switch_cancels_the_old_run_and_none_of_its_results_follow(redis_url: str) -> None:
    async with serve(settings_for(redis_url, metric_delay="0.2-0.4")) as server:
        sid, token, _ = await server.create_session(HOLDINGS)
        c = await server.connect(sid, token)
        await c.send({"action": "analyze", "ticker": "AAPL"})
        old = await c.next("analysis_started")
        await c.send({"action": "analyze", "ticker": "MSFT"})
        cancelled = await c.next("analysis_cancelled")
        assert cancelled == {
            "type": "analysis_cancelled",
            "ticker": "AAPL",
            "run_id": old["run_id"],
            "reason": "superseded",
        }
        new = await c.next("analysis_started", ticker="MSFT")
        await c.next("analysis_complete", run_id=new["run_id"])
        i_switch = c.log.index(cancelled)
        assert not [
            m
            for m in c.log[i_switch:]
            if m.get("run_id") == old["run_id"] and m["type"] == "analysis_result"
        ]
        assert (
            len(
                [
                    m
                    for m in c.log
                    if m["type"] == "analysis_result" and m["run_id"] == new["run_id"]
                ]
            )
            == 5
        )
        # the superseded task was cancelled and awaited; the new one ends right after its last
        # commit (it may still be telling the portfolio alerts when the client reads it)
        engine = server.state["engine"]
        async with asyncio.timeout(5):
            while True:
                if not engine.runs:  # the run's done callback has removed it
                    break
                await asyncio.sleep(0.01)  # wait-ok: the probe's period
        await c.close()


async def test_cancel(redis_url: str) -> None:
    async with serve(settings_for(redis_url, metric_delay="0.5")) as server:
        sid, token, _ = await server.create_session(HOLDINGS)
        c = await server.connect(sid, token)
        await c.send({"action": "analyze", "ticker": "GOOGL"})
        run = await c.next("analysis_started")
        await c.send({"action": "cancel"})
        msg = await c.next("analysis_cancelled")
        assert msg["reason"] == "cancelled" and msg["run_id"] == run["run_id"]
        await c.send({"action": "ping"})
        await c.next("pong")
        assert not [m for m in c.log[c.log.index(msg) :] if m["type"] == "analysis_result"]
        await c.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ('{"action": "dance"}', "unknown_action"),
        ('["analyze"]', "unknown_action"),
        ('{"action": "analyze", "ticker": "TSLA"}', "not_in_portfolio"),
        ('{"action": "analyze", "ticker": "no way!"}', "invalid_ticker"),
        ('{"action": "analyze"}', "invalid_ticker"),
        (b"\x00\x01binary", "bad_message"),
    ],
)
async def test_bad_message_gets_an_error_and_the_connection_stays_open(
    server: Server, frame: str | bytes, code: str
) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    c = await server.connect(sid, token)
    await c.send(frame)
    err = await c.next("error")
    assert err["code"] == code and err["message"]
    await c.send({"action": "ping"})
    await c.next("pong")
    await c.close()


async def test_message_over_4kib_closes_1009(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    c = await server.connect(sid, token)
    await c.send('{"action":"ping","pad":"' + "x" * 5000 + '"}')
    assert await asyncio.wait_for(c.closed, 10) == 1009


async def test_foreign_origin_and_bad_token_are_refused_at_the_handshake(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    url = f"{server.ws_base}/ws/sessions/{sid}"
    with pytest.raises(websockets.InvalidStatus) as bad_origin:
        await websockets.connect(
            f"{url}?token={token}", origin=websockets.Origin("http://evil.example")
        )
    with pytest.raises(websockets.InvalidStatus) as bad_token:
        await websockets.connect(f"{url}?token=wrong")
    with pytest.raises(websockets.InvalidStatus) as missing:
        await websockets.connect(f"{server.ws_base}/ws/sessions/nobody?token={token}")
    assert bad_origin.value.response.status_code == 403
    assert bad_token.value.response.status_code == missing.value.response.status_code == 403
    own = websockets.Origin(server.base)
    c = await server.connect(sid, token, origin=own)  # the service's own origin is allowed
    await c.close()


async def test_expired_session_closes_sockets_4404_and_http_404(redis_url: str) -> None:
    async with serve(settings_for(redis_url, session_ttl=1)) as server:
        sid, token, _ = await server.create_session(HOLDINGS)
        c = await server.connect(sid, token)
        assert await asyncio.wait_for(c.closed, 10) == 4404
        r = await server.http.get(
            f"/api/sessions/{sid}", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 404


async def test_delete_closes_open_sockets_4404(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    c = await server.connect(sid, token)
    await server.http.delete(f"/api/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
    assert await asyncio.wait_for(c.closed, 10) == 4404


async def test_every_connection_of_a_session_sees_the_same_events_in_order(redis_url: str) -> None:
    async with serve(settings_for(redis_url)) as a, serve(settings_for(redis_url)) as b:
        sid, token, _ = await a.create_session(HOLDINGS)
        c1 = await a.connect(sid, token)
        c2 = await b.connect(sid, token)  # another instance
        await c1.send({"action": "analyze", "ticker": "AAPL"})
        await c1.next("analysis_complete")
        await c2.next("analysis_complete")
        await a.state["valuation"].run_once()
        await c1.next("portfolio_update")
        await c2.next("portfolio_update")

        def strip(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [m for m in log if m["type"] != "session"]

        assert strip(c1.log) == strip(c2.log)
        await c1.close()
        await c2.close()


async def test_a_run_whose_client_left_completes_and_leaks_no_task(redis_url: str) -> None:
    async with serve(settings_for(redis_url, metric_delay="0.2")) as server:
        sid, token, _ = await server.create_session(HOLDINGS)
        c = await server.connect(sid, token)
        await c.send({"action": "analyze", "ticker": "MSFT"})
        await c.next("analysis_started")
        await c.close()
        engine = server.state["engine"]
        async with asyncio.timeout(10):  # the worker takes the run from the stream
            while (task := engine.runs.get(sid)) is None:
                await engine.took.wait()
        await asyncio.wait_for(task, 10)
        assert not engine.runs
        state = (
            await server.http.get(
                f"/api/sessions/{sid}", headers={"Authorization": f"Bearer {token}"}
            )
        ).json()
        assert state["current_analysis"]["status"] == "complete"
        assert len(state["analysis_results"]) == 5


async def test_a_lost_event_connection_closes_sockets_1012_and_a_reconnect_resyncs(
    server: Server, redis_client: Redis
) -> None:
    """Events published while the instance's pub/sub connection is down are lost to it, so its
    sockets close with 1012 (service restart) instead of going silently stale; a client that
    reconnects gets a fresh snapshot and the events after it."""
    sid, token, _ = await server.create_session(HOLDINGS)
    c = await server.connect(sid, token)
    killed = await redis_client.client_kill_filter(_type="pubsub")
    assert killed >= 1
    assert await asyncio.wait_for(c.closed, 10) == 1012
    async with asyncio.timeout(10):
        again = await server.connect(sid, token)  # waits for the hub to be back
        await server.state["valuation"].run_once()
        await again.next("portfolio_update")
    await again.close()


async def test_a_client_too_far_behind_is_closed_1008_not_buffered_without_bound(
    server: Server, redis_client: Redis
) -> None:
    """A client that stops reading while its session's events keep coming: once the events
    waiting for it pass the limit, its socket closes with 1008 (memory stays bounded) and the
    other clients are unaffected."""
    sid, token, _ = await server.create_session(HOLDINGS)
    raw = await websockets.connect(f"{server.ws_base}/ws/sessions/{sid}?token={token}")
    await raw.recv()  # the snapshot; from here on this client reads nothing
    channel = keys.session_events(sid)
    payload = '{"type":"analysis_result","filler":"' + "x" * 1000 + '"}'
    # the socket buffers between us take some MB first, then the server's queue fills
    first = 10**6  # versions past the snapshot's
    async with asyncio.timeout(60):
        for start in range(first, first + QUEUE_LIMIT + 15_000, 1000):
            async with redis_client.pipeline(transaction=False) as pipe:
                for v in range(start, start + 1000):
                    pipe.spublish(channel, f"{v}\n{payload}")
                await pipe.execute()
        got = 0
        try:
            while True:
                await raw.recv()  # what was sent before the close
                got += 1
        except websockets.ConnectionClosed:
            pass
    assert raw.close_code == 1008
    assert got < QUEUE_LIMIT + 15_000  # closed, not everything buffered for it


async def test_events_queued_while_a_client_lags_reach_it_complete_and_in_order(
    server: Server, redis_client: Redis
) -> None:
    """A client that stops reading while ~20 MB of its session's events come (more than the
    socket buffers hold, so the server pauses writing and queues), then reads while more keep
    coming: every event arrives, once and in commit order."""
    # a send buffer past what lags here (MARKETPULSE_WS_SEND_BUFFER; test_ws_limits.py has
    # the client that leaves more unread, and is closed)
    server.state["ws_counts"].limits = WsLimits(send_buffer=64 << 20)
    sid, token, _ = await server.create_session(HOLDINGS)
    raw = await websockets.connect(f"{server.ws_base}/ws/sessions/{sid}?token={token}")
    await raw.recv()  # the snapshot; the client reads nothing more until the first part is out
    channel = keys.session_events(sid)
    filler = "x" * 4000
    first, lagging, more = 10**6, 5000, 3000  # the first part, ~20 MB, is more than the socket
    # buffers take (and fewer events than QUEUE_LIMIT); the rest comes while the client reads

    async def publish(start: int, n: int) -> None:
        for at in range(start, start + n, 500):
            async with redis_client.pipeline(transaction=False) as pipe:
                for v in range(at, at + 500):
                    pipe.spublish(
                        channel, f'{v}\n{{"type":"analysis_result","seq":{v},"f":"{filler}"}}'
                    )
                await pipe.execute()

    async def read() -> list[int]:
        return [json.loads(await raw.recv())["seq"] for _ in range(lagging + more)]

    async with asyncio.timeout(60):
        await publish(first, lagging)
        reader = asyncio.ensure_future(read())
        await publish(first + lagging, more)
        seqs = await reader
    assert seqs == list(range(first, first + lagging + more))
    await raw.close()


async def test_a_client_over_its_message_rate_gets_rate_limited_and_stays_connected(
    server: Server,
) -> None:
    # a burst of 3 and a rate no test outlives: exactly the first three frames are handled
    server.state["ws_counts"].limits = WsLimits(msg_rate=1e-6, msg_burst=3)
    sid, token, _ = await server.create_session(HOLDINGS)
    c = await server.connect(sid, token)
    for _ in range(5):
        await c.send({"action": "dance"})
    codes = [(await c.next("error", within=10.0))["code"] for _ in range(5)]
    assert codes == ["unknown_action"] * 3 + ["rate_limited"] * 2
    assert "messages per second" in c.of("error")[-1]["message"]
    await c.send({"action": "ping"})
    assert (await c.next("error"))["code"] == "rate_limited"  # still open, still limited
    await c.close()
