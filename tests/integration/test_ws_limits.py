"""The WebSocket limits (docs/contracts.md, "Limits") against the real service and Redis: the hard
message rate closes with 1008; sockets past the per-session and per-address counts are refused
at the handshake with 429 ``too_many_connections``; a client that stops reading while its
session streams is closed with 1008 before it leaves more than the send buffer unread; a client
that stops answering pings is closed with 1011."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
import websockets
from redis.asyncio import Redis

from marketpulse.infra.redis import keys
from marketpulse.infra.ws.limits import WsLimits
from support.harness import Server, serve, settings_for
from support.logs import LogWatch
from support.raw_ws import OP_CLOSE, OP_PING, OP_PONG, RawWs

HOLDINGS = {"AAPL": 100, "MSFT": 50}
PING_S = 0.2  # the server's ping interval and pong timeout in this file


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[Server]:
    settings = settings_for(redis_url, ws_ping_interval=PING_S, ws_ping_timeout=PING_S)
    async with serve(settings) as s:
        yield s


def _url(server: Server, sid: str, token: str) -> str:
    return f"{server.ws_base}/ws/sessions/{sid}?token={token}"


async def test_past_the_hard_rate_the_socket_is_closed_with_1008(server: Server) -> None:
    # bursts and rates no test outlives: 2 handled, 3 rate_limited, the 6th closes
    server.state["ws_counts"].limits = WsLimits(
        msg_rate=1e-6, msg_burst=2, msg_hard_rate=1e-6, msg_hard_burst=5
    )
    sid, token, _ = await server.create_session(HOLDINGS)
    c = await server.connect(sid, token)
    with LogWatch("marketpulse.infra.ws", logging.INFO) as watch:
        for _ in range(6):
            await c.send({"action": "dance"})
        assert await asyncio.wait_for(c.closed, 10) == 1008
    codes = [m["code"] for m in c.of("error")]
    assert codes == ["unknown_action"] * 2 + ["rate_limited"] * 3
    assert c.ws.close_reason == "rate limit exceeded"
    assert len(watch.records) == 1 and "hard rate limit" in watch.messages()[0]
    other = await server.connect(sid, token)  # the limit is per socket
    await other.send({"action": "ping"})
    await other.next("pong")
    await other.close()


async def test_sockets_past_the_per_session_count_are_refused_with_429(server: Server) -> None:
    server.state["ws_counts"].limits = WsLimits(max_per_session=2)
    sid, token, _ = await server.create_session(HOLDINGS)
    held = [await server.connect(sid, token) for _ in range(2)]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(_url(server, sid, token))
    assert refused.value.response.status_code == 429
    error = json.loads(refused.value.response.body)["error"]
    assert error == {
        "code": "too_many_connections",
        "message": "at most 2 open sockets per session",
    }
    sid2, token2, _ = await server.create_session(HOLDINGS)
    other = await server.connect(sid2, token2)  # another session is not affected
    await other.close()
    for c in held:
        await c.close()


async def test_sockets_past_the_per_address_count_are_refused_with_429(server: Server) -> None:
    server.state["ws_counts"].limits = WsLimits(max_per_client=3)
    sessions = [await server.create_session(HOLDINGS) for _ in range(4)]
    held = [await server.connect(sid, token) for sid, token, _ in sessions[:3]]
    sid, token, _ = sessions[3]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(_url(server, sid, token))
    assert refused.value.response.status_code == 429
    assert "per client address" in json.loads(refused.value.response.body)["error"]["message"]
    for c in held:
        await c.close()


async def test_a_client_that_stops_reading_is_closed_before_the_send_buffer_bound(
    server: Server, redis_client: Redis
) -> None:
    bound = 256 << 10
    server.state["ws_counts"].limits = WsLimits(send_buffer=bound)
    sid, token, _ = await server.create_session(HOLDINGS)
    raw = await websockets.connect(_url(server, sid, token))  # its queue stops its reads
    await raw.recv()  # the snapshot; then the client reads nothing until the server gives up
    channel = keys.session_events(sid)
    filler = "x" * 4000
    first = 10**6
    with LogWatch("marketpulse.sessions.ws", logging.INFO) as watch:
        async with asyncio.timeout(60):
            at = first
            while not watch.records:  # ~2 MB a round: past the socket buffers, then the bound
                async with redis_client.pipeline(transaction=False) as pipe:
                    for v in range(at, at + 500):
                        pipe.spublish(
                            channel, f'{v}\n{{"type":"analysis_result","seq":{v},"f":"{filler}"}}'
                        )
                    await pipe.execute()
                at += 500
            seqs = await _seqs_until_closed(raw)
    assert raw.close_code == 1008 and raw.close_reason == "too slow"
    assert seqs == list(range(first, first + len(seqs)))  # what it got came whole, in order
    [line] = watch.messages()
    unread = int(line.split(" left ")[1].split(" bytes")[0])
    assert bound < unread <= bound + len(filler) + 100  # closed at the first message past it


async def _seqs_until_closed(ws: websockets.ClientConnection) -> list[int]:
    seqs: list[int] = []
    try:
        while True:
            seqs.append(json.loads(await ws.recv())["seq"])
    except websockets.ConnectionClosed:
        return seqs


async def test_a_client_that_stops_answering_pings_is_closed_with_1011(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    port = int(server.base.rsplit(":", 1)[1])
    ws = await RawWs.open("127.0.0.1", port, f"/ws/sessions/{sid}?token={token}")
    answered = 0
    async with asyncio.timeout(30):
        while answered < 3:  # answers three pings: the socket stays open meanwhile
            f = await ws.recv_frame()
            assert f is not None and f.opcode != OP_CLOSE
            if f.opcode == OP_PING:
                await ws.send_frame(OP_PONG, f.payload)
                answered += 1
        assert await ws.close_code() == 1011  # then answers none
    await ws.aclose()


async def test_the_per_address_count_spans_every_kind_of_socket(server: Server) -> None:
    server.state["ws_counts"].limits = WsLimits(max_per_client=2)
    sid, token, _ = await server.create_session(HOLDINGS)
    session = await server.connect(sid, token)
    dashboard = await websockets.connect(f"{server.ws_base}/ws/dashboard")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{server.ws_base}/ws/alerts")
    assert refused.value.response.status_code == 429
    await dashboard.close()
    await session.close()


@pytest.mark.parametrize("path", ["/ws/dashboard", "/ws/alerts"])
async def test_the_other_sockets_are_rate_limited_too(server: Server, path: str) -> None:
    server.state["ws_counts"].limits = WsLimits(
        msg_rate=1e-6, msg_burst=1, msg_hard_rate=1e-6, msg_hard_burst=3
    )
    async with websockets.connect(f"{server.ws_base}{path}") as ws:
        for _ in range(4):
            await ws.send('{"action":"ping"}')
        got = await _types_until_closed(ws)
    answers = [t for t in got if t in ("pong", "error")]
    # the dashboard queues its answers for a writer that the close may cut short
    expected = ["pong", "error", "error"]
    assert answers == (expected if path == "/ws/alerts" else expected[: max(1, len(answers))])
    assert ws.close_code == 1008


async def _types_until_closed(ws: websockets.ClientConnection) -> list[str]:
    types: list[str] = []
    try:
        async with asyncio.timeout(10):
            while True:
                msg = json.loads(await ws.recv())
                types.append(msg["type"])
                if msg["type"] == "error":
                    assert msg["code"] == "rate_limited"
    except websockets.ConnectionClosed:
        return types
