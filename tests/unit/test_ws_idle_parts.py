"""The pieces that keep an idle socket small (issue 18, fan-out at scale): the protocol's
message inbox and writable flag (``infra/ws/protocol.py``), which stand in for an
``asyncio.Queue`` and an ``asyncio.Event``, the timer wheel (``infra/ws/wheel.py``), the alert
parsed once for every socket, and the match of a session socket's handshake that
the app sends straight to its endpoint (``sessions/ws.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import pytest

from marketpulse.infra.ws.protocol import _Flag, _Inbox
from marketpulse.infra.ws.wheel import TimerWheel
from marketpulse.sessions.ws import _AlertMemo, direct_session_id


def started[T](coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """``coro`` as a task already run up to its first wait (eagerly, in this call): no loop
    iteration to wait for before it is known to be waiting."""
    return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)


async def test_the_inbox_hands_messages_out_in_order_and_wakes_a_waiting_getter() -> None:
    inbox = _Inbox()
    assert inbox.empty()
    getter = started(inbox.get())  # waiting now
    assert not getter.done()
    inbox.put_nowait({"n": 1})
    inbox.put_nowait({"n": 2})
    assert await asyncio.wait_for(getter, 1) == {"n": 1}
    assert not inbox.empty()
    assert await inbox.get() == {"n": 2}
    assert inbox.empty()


async def test_a_cancelled_getter_loses_no_message() -> None:
    inbox = _Inbox()
    gone = started(inbox.get())
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    inbox.put_nowait("kept")
    assert await asyncio.wait_for(inbox.get(), 1) == "kept"


async def test_two_getters_each_get_one_message() -> None:
    inbox = _Inbox()
    getters = [started(inbox.get()) for _ in range(2)]
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    got = await asyncio.wait_for(asyncio.gather(*getters), 1)
    assert sorted(got) == ["a", "b"]


async def test_the_flag_waits_while_cleared_and_wakes_every_waiter_when_set() -> None:
    flag = _Flag(True)
    assert flag.is_set()
    assert await asyncio.wait_for(flag.wait(), 1) is True  # set: at once
    flag.clear()
    assert not flag.is_set()
    waiters = [started(flag.wait()) for _ in range(3)]
    cancelled = started(flag.wait())
    assert not any(w.done() for w in waiters)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]


def _scope(path: str, kind: str = "websocket", root: str = "") -> dict[str, Any]:
    return {"type": kind, "path": path, "root_path": root}


def test_only_a_session_sockets_handshake_goes_straight_to_its_endpoint() -> None:
    assert direct_session_id(_scope("/ws/sessions/user-1")) == "user-1"
    assert direct_session_id(_scope("/api/ws/sessions/user-1", root="/api")) == "user-1"
    assert direct_session_id(_scope("/ws/sessions/user-1", kind="http")) is None
    assert direct_session_id(_scope("/ws/sessions/")) is None
    assert direct_session_id(_scope("/ws/sessions/a/b")) is None  # the router's 403
    assert direct_session_id(_scope("/ws/alerts")) is None
    assert direct_session_id(_scope("/ws/dashboard")) is None


def test_an_alert_is_parsed_once_for_every_socket_and_sent_typed_first() -> None:
    memo = _AlertMemo()
    raw = b'{"symbol":"AAPL","price":190.5,"type":"price_threshold"}'
    symbol, owner, text = memo.of(raw)
    assert symbol == "AAPL" and owner is None
    assert text.startswith('{"type":"alert"')  # the type first, as every event's
    assert json.loads(text) == {"type": "alert", "symbol": "AAPL", "price": 190.5}
    assert memo.of(raw) == (symbol, None, text) and memo.of(raw)[2] is text  # not encoded again
    assert memo.of(b"not json") == (None, None, "")
    assert memo.of(b'{"symbol":["AAPL"]}') == (None, None, "")  # no symbol a socket could hold
    # a portfolio alert's fire names its session: only that session's sockets get it
    mine = b'{"symbol":"portfolio:s1","session_id":"s1","value":1.0}'
    symbol, owner, text = memo.of(mine)
    assert owner == "s1" and json.loads(text)["type"] == "portfolio_alert"


class _Entry:
    __slots__ = ("called", "calls", "slot")

    def __init__(self) -> None:
        self.slot: int | None = None
        self.calls = 0
        self.called = asyncio.Event()

    def due(self) -> None:
        self.calls += 1
        self.called.set()


async def test_the_timer_wheel_calls_each_entry_once_when_due_and_not_once_discarded() -> None:
    timers = TimerWheel(asyncio.get_running_loop(), tick_s=0.01)
    fired, kept, moved = _Entry(), _Entry(), _Entry()
    timers.add(fired, 0.02)
    timers.add(kept, 0.02)
    timers.add(moved, 0.02)
    timers.add(moved, 0.5)  # replaces its pending call
    timers.discard(kept)
    assert len(timers) == 2 and kept.slot is None
    await asyncio.wait_for(fired.called.wait(), 5)
    assert (fired.calls, kept.calls, moved.calls) == (1, 0, 0)
    assert fired.slot is None and moved.slot is not None and len(timers) == 1
    timers.discard(moved)
    assert len(timers) == 0
