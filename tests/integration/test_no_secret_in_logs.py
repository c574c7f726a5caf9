"""No secret in a log line or an error answer (issue 17, item 1).

One real ``marketpulse serve`` process, at DEBUG, with its embedded Redis (so with a generated
password), is used with tokens every way: the subprotocol and ``?token=`` on the session
socket, ``Authorization: Bearer`` and a stray ``?token=`` on HTTP, each with the right token, a
wrong one, a malformed one and the token of a deleted session. Then the whole log of the run,
its shutdown included, and every answer (HTTP bodies, refused handshakes, socket messages) is
searched for each secret, and none is found.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import websockets

from marketpulse.infra.redis.embedded import AUTH_CONF, free_port
from support.environ import without_settings
from support.harness import TokenVia, connect_session
from support.processes import SERVE_READY, Proc

HOLDINGS = {"AAPL": 10, "MSFT": 5}
VIAS: tuple[TokenVia, ...] = ("subprotocol", "query")


async def _refused(ws_base: str, sid: str, token: str, via: TokenVia, answers: list[str]) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect_session(ws_base, sid, token, via=via, open_timeout=10)
    assert refused.value.response.status_code == 403
    answers.append(refused.value.response.body.decode(errors="replace"))


async def _session_messages(ws: websockets.ClientConnection, until: str) -> list[str]:
    out: list[str] = []
    async with asyncio.timeout(30):
        while True:
            raw = str(await ws.recv())
            out.append(raw)
            if json.loads(raw)["type"] == until:
                return out


async def test_no_token_or_password_in_the_log_or_an_answer(
    tmp_path: Path, procs: list[Proc]
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    log_path = tmp_path / "service.log"
    proc = Proc("serve", {}, log_path)
    proc.env = {
        **without_settings(),
        "MARKETPULSE_PORT": str(port),
        "MARKETPULSE_DATA_DIR": str(data_dir),  # no MARKETPULSE_REDIS_URL: the embedded Redis
        "MARKETPULSE_LOG_LEVEL": "DEBUG",
        "MARKETPULSE_METRIC_DELAY": "0.01",
        "MARKETPULSE_MARKET_INTERVAL": "3600",
        "MARKETPULSE_WATCHLIST": "none",
    }
    procs.append(proc)
    await proc.start(SERVE_READY)
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    wrong = secrets.token_urlsafe(32)
    malformed = 'Mal"formed tok<en>;,=&' + secrets.token_hex(6)
    header_malformed = "x" * 40 + secrets.token_hex(8) + '"; ,'
    answers: list[str] = []

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:

        async def call(method: str, path: str, token: str | None = None, **kw: object) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
            r = await http.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]
            answers.append(r.text)
            return r.status_code

        r = await http.post("/api/sessions", json={"holdings": HOLDINGS})
        assert r.status_code == 201
        sid, token = r.json()["session_id"], r.json()["token"]
        r = await http.post("/api/sessions", json={"holdings": HOLDINGS})
        gone_sid, gone_token = r.json()["session_id"], r.json()["token"]

        # the right token, every way
        ws = await connect_session(ws_base, sid, token)
        await ws.send(json.dumps({"action": "analyze", "ticker": "AAPL"}))
        answers += await _session_messages(ws, "analysis_complete")
        await ws.close()
        ws = await connect_session(ws_base, sid, token, via="query")
        await ws.send(json.dumps({"action": "ping"}))
        answers += await _session_messages(ws, "pong")
        await ws.send(b"\x00binary")
        await ws.send("{not json")
        answers += await _session_messages(ws, "error")
        await ws.close()
        assert await call("GET", f"/api/sessions/{sid}", token) == 200
        assert await call("PUT", f"/api/sessions/{sid}/holdings", token, json={"h": 1}) == 422
        assert await call("GET", f"/api/sessions/{sid}?token={token}") == 404  # query: not HTTP's

        # a wrong, a malformed and a deleted session's token
        assert await call("DELETE", f"/api/sessions/{gone_sid}", gone_token) == 204
        for via in VIAS:
            await _refused(ws_base, sid, wrong, via, answers)
            await _refused(ws_base, gone_sid, gone_token, via, answers)
        await _refused(ws_base, sid, quote(malformed, safe=""), "query", answers)
        for bad in (wrong, header_malformed, gone_token):
            assert await call("GET", f"/api/sessions/{sid}", bad) == 404
            assert (
                await call("PUT", f"/api/sessions/{sid}/holdings", bad, json={"holdings": HOLDINGS})
                == 404
            )
        assert await call("DELETE", f"/api/sessions/{gone_sid}", gone_token) == 404
        assert await call("GET", f"/api/sessions/{sid}?token={quote(malformed)}") == 404
        body = {"holdings": HOLDINGS, "token": wrong, "session_id": wrong[:70] + "!"}
        assert await call("POST", "/api/sessions", json=body) == 422

    assert await proc.kill(signal.SIGTERM) in (0, -signal.SIGTERM)
    log = log_path.read_text()
    password = (data_dir / "redis" / AUTH_CONF).read_text().split()[1]
    shown = {
        "token": token,
        "deleted session's token": gone_token,
        "wrong token": wrong,
        "malformed token": malformed,
        "malformed token, encoded": quote(malformed, safe=""),
        "malformed bearer": header_malformed.rstrip('"; ,'),
        "redis password": password,
    }
    for what, secret in shown.items():
        assert secret not in log, f"{what} in the log"
        for answer in answers:
            assert secret not in answer, f"{what} in an answer: {answer}"
    # the lines that would have held them are there, redacted
    assert "token=[redacted]" in log
    assert "embedded redis-server stopped" in log  # a SIGTERM stops the embedded Redis too
    assert "ready to exit" in (data_dir / "redis" / "redis.log").read_text()
