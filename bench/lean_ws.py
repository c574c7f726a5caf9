"""A minimal WebSocket client (RFC 6455) for the latency bench: the upgrade handshake, masked
text frames out, unmasked frames in, and one waiter per connection for the next message that
starts with a given prefix (the server's messages start with their type).

Why not the ``websockets`` library: the bench's client shares the two cores with the server and
Redis, and that client's per-message work (an asyncio queue, a task wake-up, UTF-8 decoding of
every message) was 5-15 ms of CPU per round of 100 analyses, taken from the processes being
measured. This one costs a few microseconds per message. ``--client websockets`` in the bench
still runs the library client, for comparison.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable
from typing import cast

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    mask = int.from_bytes((key * (n // 4 + 1))[:n])
    return head + key + (int.from_bytes(payload) ^ mask).to_bytes(n)


class LeanWebSocket(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.accept = ""
        self.prefix = b""
        self.waiter: asyncio.Future[bytes] | None = None
        # every text message (after the waiter's match), for a client that counts them all
        self.on_text: Callable[[bytes], None] | None = None

    @classmethod
    async def connect(cls, host: str, port: int, path: str, first: str) -> LeanWebSocket:
        """Upgrade, then wait for the server's first message (it must start with ``first``)."""
        loop = asyncio.get_running_loop()
        _, ws = await loop.create_connection(cls, host, port)
        greeting = ws.expect(first)
        key = base64.b64encode(os.urandom(16)).decode()
        ws.accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        assert ws.transport is not None
        ws.transport.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await ws.upgraded
        await greeting
        return ws

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)  # closed either way; only a waiter needs to know
        for fut in (self.upgraded, self.waiter):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[: end + 4]
            if not head.startswith("HTTP/1.1 101") or self.accept not in head:
                self.upgraded.set_exception(ConnectionError(f"upgrade refused: {head[:80]!r}"))
                return
            self.upgraded.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buf = self.buf
        at = 0
        while len(buf) - at >= 2:
            opcode, n = buf[at] & 0x0F, buf[at + 1] & 0x7F  # a server never masks
            start = at + 2
            if n == 126:
                if len(buf) - at < 4:
                    break
                n, start = struct.unpack_from("!H", buf, at + 2)[0], at + 4
            elif n == 127:
                if len(buf) - at < 10:
                    break
                n, start = struct.unpack_from("!Q", buf, at + 2)[0], at + 10
            if len(buf) - start < n:
                break
            at = start + n
            if opcode == 0x1:  # text (the server sends each message in one frame)
                waiter = self.waiter
                if waiter is not None and buf.startswith(self.prefix, start):
                    self.waiter = None
                    waiter.set_result(bytes(buf[start:at]))
                elif self.on_text is not None:
                    self.on_text(bytes(buf[start:at]))
            elif opcode == 0x9 and self.transport is not None:  # ping: answer pong
                self.transport.write(_masked_frame(0xA, bytes(buf[start:at])))
            elif opcode == 0x8 and not self.closed.done():
                self.closed.set_result(None)
        del buf[:at]

    def send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(_masked_frame(0x1, text.encode()))

    def expect(self, prefix: str) -> asyncio.Future[bytes]:
        """The next message starting with ``prefix`` (others are skipped); ask before sending
        the message that causes it."""
        self.prefix = prefix.encode()
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    async def close(self) -> None:
        assert self.transport is not None
        self.transport.write(_masked_frame(0x8, struct.pack("!H", 1000)))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), 5)
        finally:
            self.transport.close()
