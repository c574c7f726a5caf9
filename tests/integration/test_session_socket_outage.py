"""While Redis is down the session edge gives a defined answer: a socket's handshake and an HTTP
request are answered HTTP 503 ``redis_unavailable`` with ``Retry-After``, naming no internal
address, with one log line each and no stack trace; once Redis is back the client connects."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
import websockets

from marketpulse.infra.redis.embedded import EmbeddedRedis
from support.harness import serve, settings_for


async def test_a_session_socket_is_refused_while_redis_is_down_then_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", durable=True)
    redis.start()
    try:
        async with serve(settings_for(redis.url, market_interval=60.0)) as server:
            sid, token, _ = await server.create_session({"AAPL": 10})
            url = f"{server.ws_base}/ws/sessions/{sid}?token={token}"
            redis.stop()  # SIGTERM: the AOF is flushed, the session survives the restart
            with caplog.at_level(logging.INFO, logger="marketpulse.sessions.ws"):
                async with asyncio.timeout(30):
                    with pytest.raises(websockets.InvalidStatus) as refused:
                        async with websockets.connect(url):
                            pass
            answer = refused.value.response
            assert answer.status_code == 503
            assert answer.headers["Retry-After"] == "1"
            assert json.loads(answer.body)["error"]["code"] == "redis_unavailable"
            assert b"127.0.0.1" not in answer.body
            lines = [r for r in caplog.records if r.name == "marketpulse.sessions.ws"]
            assert [r.getMessage().split(":")[0] for r in lines] == ["session socket refused"]
            with caplog.at_level(logging.INFO, logger="marketpulse.infra.http_errors"):
                read = await server.http.get(
                    f"/api/sessions/{sid}", headers={"Authorization": f"Bearer {token}"}
                )
            assert (read.status_code, read.headers["Retry-After"]) == (503, "1")
            assert read.json()["error"]["code"] == "redis_unavailable"
            assert "127.0.0.1" not in read.text
            for method, path, body in (
                ("POST", "/api/sessions", {"holdings": {"MSFT": 1}}),
                ("GET", "/api/alerts", None),
                ("GET", "/api/symbols", None),
                ("GET", "/api/alerts/history", None),
            ):
                answer_ = await server.http.request(method, path, json=body)
                assert answer_.status_code == 503, (method, path, answer_.text)
                assert answer_.json()["error"]["code"] == "redis_unavailable", path
            for path in ("/ws/alerts", "/ws/dashboard"):  # the other sockets answer alike
                async with asyncio.timeout(30):
                    with pytest.raises(websockets.InvalidStatus) as other:
                        async with websockets.connect(f"{server.ws_base}{path}"):
                            pass
                denied = other.value.response
                assert (denied.status_code, denied.headers["Retry-After"]) == (503, "1"), path
                assert json.loads(denied.body)["error"]["code"] == "redis_unavailable", path
            assert all(r.exc_info is None for r in caplog.records)  # no stack trace anywhere
            redis.start()  # same port, same data
            async with asyncio.timeout(30):
                while True:  # bounded: the hub and the pool reconnect within a few tries
                    try:
                        async with websockets.connect(url) as ws:
                            first = await ws.recv()
                            break
                    except websockets.InvalidStatus:
                        await asyncio.sleep(0.2)  # wait-ok: a bounded retry of the handshake
            assert '"type":"session"' in str(first).replace(" ", "")
    finally:
        redis.stop()
