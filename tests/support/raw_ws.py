"""A WebSocket client built by hand over a raw socket, for sending what no well-behaved client
library will: frames with any FIN/RSV/opcode byte, masked or not, of any declared length.

``RawWs.open(host, port, path)`` does a real HTTP/1.1 Upgrade handshake (RFC 6455 section 4.1)
and checks the ``Sec-WebSocket-Accept`` answer; ``send_frame`` writes one frame exactly as asked;
``close_code()`` reads the server's frames until its close frame (answering nothing) and returns
the close code, or None when the server dropped the connection without one. Every read is
under a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    declared: int | None = None,
) -> bytes:
    """One frame: ``rsv`` is the three RSV bits (0-7); ``declared`` overrides the length field
    (the payload sent is still ``payload``)."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)
    n = len(payload) if declared is None else declared
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, mbit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


@dataclass
class ServerFrame:
    fin: bool
    opcode: int
    payload: bytes


class RawWs:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, host: str, port: int, path: str, *, within: float = 10.0, headers: str = ""
    ) -> RawWs:
        """Connect and complete the Upgrade handshake; raises AssertionError if it is refused."""
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            key = base64.b64encode(os.urandom(16))
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{headers}\r\n".encode()
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            writer.close()
            raise AssertionError(f"handshake refused: {head.decode(errors='replace')}")
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        assert accept in head, head  # the server answered our key (RFC 6455 section 4.2.2)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are; a server that has already closed is not an error here."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError:
            pass

    async def send_frame(self, opcode: int, payload: bytes, **kw: bool | int | None) -> None:
        await self.send_raw(frame(opcode, payload, **kw))  # type: ignore[arg-type]

    async def send_text(self, text: str | bytes) -> None:
        await self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    async def recv_frame(self, within: float = 10.0) -> ServerFrame | None:
        """The server's next frame, or None once it has closed the connection."""
        try:
            async with asyncio.timeout(within):
                b0, b1 = await self.reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return ServerFrame(bool(b0 & 0x80), b0 & 0xF, payload)

    async def close_code(self, within: float = 10.0) -> int | None:
        """Read until the server's close frame; its code (1005 if it carried none), or None if
        the connection ended without one."""
        async with asyncio.timeout(within):
            while True:
                f = await self.recv_frame(within)
                if f is None:
                    return None
                if f.opcode == OP_CLOSE:
                    return struct.unpack("!H", f.payload[:2])[0] if len(f.payload) >= 2 else 1005

    async def texts_until_close(self, within: float = 10.0) -> tuple[list[bytes], int | None]:
        """Every text payload before the server's close frame, and its code (None: no close)."""
        texts: list[bytes] = []
        async with asyncio.timeout(within):
            while True:
                f = await self.recv_frame(within)
                if f is None:
                    return texts, None
                if f.opcode == OP_TEXT:
                    texts.append(f.payload)
                elif f.opcode == OP_CLOSE:
                    code = struct.unpack("!H", f.payload[:2])[0] if len(f.payload) >= 2 else 1005
                    return texts, code

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
