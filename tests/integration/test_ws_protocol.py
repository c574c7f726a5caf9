"""The server's WebSocket protocol (infra/ws/protocol.py) against a real ``websockets`` client over
a real socket: frames from the synchronous send parse at every length encoding, interleave in
order with ordinary sends, precede the close frame, and the synchronous send steps aside (answers
False, sends nothing) when flow control pauses writing or the connection is closing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from marketpulse.infra.ws.protocol import send_text_now, text_frame
from support.harness import serve_asgi

# one below, at and above each boundary of the three length encodings
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]
FLOOD = 3000  # 4 KiB messages to a client that does not read: ~12 MB, past every buffer


class App:
    """A bare ASGI app whose behaviour the test picks with the path."""

    def __init__(self) -> None:
        self.fast_refused = 0
        self.paused = asyncio.Event()  # the first synchronous send refused by flow control
        self.after_close: bool | None = None
        self.done = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await receive()
        await send({"type": "websocket.accept"})
        now = send_text_now(scope)
        assert now is not None
        try:
            if scope["path"] == "/frames":
                for i, n in enumerate(SIZES):
                    text = f"{i}:" + "é" * n  # two UTF-8 bytes a character
                    if i % 2 or not now(text):  # odd ones through the ASGI send
                        await send({"type": "websocket.send", "text": text})
                await send({"type": "websocket.close", "code": 1000})
                self.after_close = now("late")
            elif scope["path"] == "/flood":
                for i in range(FLOOD):
                    text = f"{i:06d}" + "x" * 4090
                    if not now(text):
                        self.fast_refused += 1
                        self.paused.set()
                        await send({"type": "websocket.send", "text": text})  # waits to drain
                await send({"type": "websocket.close", "code": 1000})
        finally:
            self.done.set()


@contextlib.asynccontextmanager
async def served(app: App) -> AsyncIterator[str]:
    async with serve_asgi(app, lifespan="off") as base:
        yield base.replace("http://", "ws://")


@pytest.mark.parametrize(
    ("n", "header"),
    [(0, b"\x81\x00"), (125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"),
     (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00")],
)  # fmt: skip
def test_text_frame_header_encodes_the_length_per_rfc_6455(n: int, header: bytes) -> None:
    frame = text_frame("a" * n)
    assert frame == header + b"a" * n


async def test_synchronous_and_asgi_sends_arrive_whole_and_in_order_before_the_close() -> None:
    app = App()
    async with served(app) as base, websockets.connect(f"{base}/frames", max_size=None) as ws:
        got = [await ws.recv() for _ in SIZES]
        with pytest.raises(websockets.ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code == 1000
        await app.done.wait()
    assert got == [f"{i}:" + "é" * n for i, n in enumerate(SIZES)]
    assert app.after_close is False  # nothing is written after the close frame


async def test_a_client_that_does_not_read_pauses_the_synchronous_send_and_loses_nothing() -> None:
    app = App()
    async with served(app) as base, websockets.connect(f"{base}/flood", max_size=None) as ws:
        async with asyncio.timeout(30):
            await app.paused.wait()  # the server filled every buffer, then stepped aside
            got = [await ws.recv() for _ in range(FLOOD)]
            await app.done.wait()
    assert [int(m[:6]) for m in got] == list(range(FLOOD))
    assert all(len(m) == 4096 for m in got)
