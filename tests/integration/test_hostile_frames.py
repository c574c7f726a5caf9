"""Hostile input over a raw socket (tests/support/raw_ws.py) against the real service: every
protocol violation closes with its documented code (docs/contracts.md, "Protocol violations")
and at most one INFO line, never a traceback or an ERROR; a bad message gets an ``error`` and
the socket stays open; 1,000 mutations of a valid message change none of that. Afterwards
``/healthz`` answers and a normal client still gets a full analysis."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Iterator

import pytest

from marketpulse.sessions.metrics import METRIC_NAMES
from support.harness import Server, serve, settings_for
from support.logs import LogWatch
from support.raw_ws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RawWs,
    frame,
)

HOLDINGS = {"AAPL": 100, "MSFT": 50}
VALID = b'{"action":"analyze","ticker":"AAPL"}'
MUTATIONS = 1000
SEED = 17

# name -> (frames sent, close code)
VIOLATIONS: dict[str, tuple[list[bytes], int]] = {
    "invalid UTF-8": ([frame(OP_TEXT, b'{"action":"\xff\xfe"}')], 1007),
    "invalid UTF-8 across fragments": (
        [frame(OP_TEXT, b'{"a":"\xe2\x82', fin=False), frame(OP_CONT, b'\xff"}')],
        1007,
    ),
    "message over 4 KiB": ([frame(OP_TEXT, b"a" * 5000)], 1009),
    "fragments over 4 KiB in all": (
        [frame(OP_TEXT, b"a" * 3000, fin=False), frame(OP_CONT, b"a" * 3000)],
        1009,
    ),
    "declared length past the limit": ([frame(OP_TEXT, b"", declared=1 << 40)], 1009),
    "continuation without a start": ([frame(OP_CONT, b"abc")], 1002),
    "text inside a fragmented message": (
        [frame(OP_TEXT, b"a", fin=False), frame(OP_TEXT, b"b")],
        1002,
    ),
    **{f"opcode {op:#x}": ([frame(op, b"x")], 1002) for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)},
    "unmasked frame": ([frame(OP_TEXT, b'{"action":"ping"}', mask=False)], 1002),
    **{f"RSV bits {rsv:03b}": ([frame(OP_TEXT, b"{}", rsv=rsv)], 1002) for rsv in (1, 2, 4, 7)},
    "ping over 125 bytes": ([frame(OP_PING, b"p" * 126)], 1002),
    "fragmented ping": ([frame(OP_PING, b"p", fin=False)], 1002),
    "close with an invalid code": ([frame(OP_CLOSE, b"\x00\x01")], 1002),
}


class _Records:
    """Every record of the run at DEBUG and above, from the root logger and uvicorn's (which
    does not propagate to the root)."""

    def __init__(self) -> None:
        self.watches = [LogWatch(""), LogWatch("uvicorn")]

    def __enter__(self) -> _Records:
        for w in self.watches:
            w.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.watches:
            w.__exit__(None, None, None)

    @property
    def all(self) -> list[logging.LogRecord]:
        return [r for w in self.watches for r in w.records]

    def about(self, peer: str) -> list[logging.LogRecord]:
        return [r for r in self.all if r.levelno >= logging.INFO and peer in r.getMessage()]


@pytest.fixture
def records() -> Iterator[_Records]:
    with _Records() as r:
        yield r


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[Server]:
    # a rate past what the fuzz sends: the limits have their own tests (test_ws_limits.py)
    async with serve(settings_for(redis_url, ws_msg_rate=1e6, ws_msg_hard_rate=1e6)) as s:
        yield s


async def _open(server: Server, sid: str, token: str) -> tuple[RawWs, str]:
    """A raw session socket past its snapshot, and the client's address as the log names it."""
    port = int(server.base.rsplit(":", 1)[1])
    ws = await RawWs.open("127.0.0.1", port, f"/ws/sessions/{sid}?token={token}")
    first = await ws.recv_frame()
    assert first is not None and json.loads(first.payload)["type"] == "session"
    host, local_port = ws.writer.get_extra_info("sockname")[:2]
    return ws, f"{host}:{local_port}"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(3)
        at = rng.randrange(len(out) + 1) if out else 0
        if kind == 0 and out:  # flip a byte
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif kind == 1:  # truncate
            del out[at:]
        else:  # insert
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _no_trace(records: _Records) -> None:
    bad = [r for r in records.all if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]
    assert not any("Traceback" in r.getMessage() for r in records.all)


@pytest.mark.parametrize("name", list(VIOLATIONS))
async def test_a_protocol_violation_closes_with_its_code_and_one_info_line(
    server: Server, records: _Records, name: str
) -> None:
    frames, code = VIOLATIONS[name]
    sid, token, _ = await server.create_session(HOLDINGS)
    ws, peer = await _open(server, sid, token)
    for f in frames:
        await ws.send_raw(f)
    assert await ws.close_code() == code
    await ws.aclose()
    lines = records.about(peer)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.INFO and str(code) in lines[0].getMessage()
    _no_trace(records)


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([frame(OP_BINARY, b"\x00\x01")], "bad_message"),
        ([frame(OP_TEXT, b"{{{ not json")], "bad_json"),
        ([frame(OP_TEXT, b"[1, 2]")], "unknown_action"),
        ([frame(OP_TEXT, b'{"action":', fin=False), frame(OP_CONT, b'"dance"}')], "unknown_action"),
    ],
)
async def test_a_bad_message_gets_an_error_and_the_socket_stays_open(
    server: Server, records: _Records, frames: list[bytes], code: str
) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    ws, peer = await _open(server, sid, token)
    for f in frames:
        await ws.send_raw(f)
    await ws.send_text('{"action":"ping"}')
    got = [json.loads(t) for t in (await _texts_until(ws, "pong"))]
    assert [m["code"] for m in got if m["type"] == "error"] == [code]
    await ws.send_frame(OP_CLOSE, b"\x03\xe8")
    assert await ws.close_code() == 1000
    await ws.aclose()
    assert records.about(peer) == []
    _no_trace(records)


async def _texts_until(ws: RawWs, type_: str) -> list[bytes]:
    texts: list[bytes] = []
    while True:
        f = await ws.recv_frame()
        assert f is not None, f"closed before {type_}"
        if f.opcode == OP_TEXT:
            texts.append(f.payload)
            if json.loads(f.payload)["type"] == type_:
                return texts


async def test_a_thousand_mutated_messages_leave_the_service_whole(
    server: Server, records: _Records
) -> None:
    rng = random.Random(SEED)
    mutants = [_mutate(rng, VALID) for _ in range(MUTATIONS)]
    sid, token, _ = await server.create_session(HOLDINGS)
    ws, _peer = await _open(server, sid, token)
    invalid = 0
    for m in mutants:
        if _is_utf8(m):
            await ws.send_text(m)
            continue
        invalid += 1  # a message that is not UTF-8 closes its socket: on a fresh one
        alone, _ = await _open(server, sid, token)
        await alone.send_text(m)
        assert await alone.close_code() == 1007
        await alone.aclose()
    await ws.send_text('{"action":"ping"}')
    await _texts_until(ws, "pong")  # every valid-UTF-8 mutant was answered, the socket is open
    await ws.send_frame(OP_CLOSE, b"\x03\xe8")
    await ws.close_code()
    await ws.aclose()
    assert 0 < invalid < MUTATIONS

    assert (await server.http.get("/healthz")).status_code == 200
    c = await server.connect(sid, token)
    await c.send({"action": "analyze", "ticker": "MSFT"})
    started = await c.next("analysis_started", ticker="MSFT")
    await c.next("analysis_complete", within=30.0, run_id=started["run_id"])
    results = [m for m in c.of("analysis_result") if m["run_id"] == started["run_id"]]
    assert sorted(m["metric"] for m in results) == sorted(METRIC_NAMES)
    await c.close()
    infos = [r for r in records.all if "sent invalid UTF-8" in r.getMessage()]
    assert len(infos) == invalid
    _no_trace(records)
