"""A session socket takes its token as the subprotocol ``marketpulse.token.<token>``
(docs/contracts.md), answering only ``marketpulse.v1``; ``?token=`` keeps working for older
clients, and the subprotocol wins when both are given."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.typing import Subprotocol

from marketpulse.sessions.socket_auth import PROTOCOL, subprotocols
from support.harness import Server, TokenVia, connect_session, serve, settings_for

HOLDINGS = {"AAPL": 10, "MSFT": 5}


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[Server]:
    async with serve(settings_for(redis_url)) as s:
        yield s


async def test_the_token_as_a_subprotocol_opens_the_session_and_is_never_echoed(
    server: Server,
) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    ws = await connect_session(server.ws_base, sid, token)
    try:
        assert ws.subprotocol == PROTOCOL
        assert ws.response is not None
        assert ws.response.headers["Sec-WebSocket-Protocol"] == PROTOCOL
        assert token not in str(ws.response.headers)
        assert '"type":"session"' in str(await ws.recv())
    finally:
        await ws.close()


async def test_query_token_still_works(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    c = await server.connect(sid, token, via="query")
    assert c.log[0]["state"]["session_id"] == sid
    assert c.ws.subprotocol is None
    await c.close()


async def test_a_wrong_token_either_way_is_refused_at_the_handshake(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    vias: tuple[TokenVia, ...] = ("subprotocol", "query")
    for via in vias:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await connect_session(server.ws_base, sid, token[::-1], via=via)
        assert refused.value.response.status_code == 403
        assert token[::-1] not in refused.value.response.body.decode(errors="replace")


async def test_the_subprotocol_wins_over_the_query(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    url = f"{server.ws_base}/ws/sessions/{sid}"
    good = [Subprotocol(p) for p in subprotocols(token)]
    bad = [Subprotocol(p) for p in subprotocols("wrong-token")]
    ws = await websockets.connect(f"{url}?token=wrong-token", subprotocols=good)
    await ws.close()
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{url}?token={token}", subprotocols=bad)
