"""How a run ends, as each session script stores and announces it: cancelled by the client,
failed because its inputs cannot be built, failed on restart because its ticker is no longer
held or its basis kept moving, restarted on a new basis, completed. Each leaves
``current_analysis`` naming the run (ticker, run id, start, basis, status) and publishes its
event with the new version, in the same step."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.sessions.portfolio import value
from marketpulse.sessions.store import RunSnapshot, SessionStore, hash_token

HOLDINGS = {"AAPL": 100.0, "GOOGL": 50.0, "MSFT": 75.0}
PRICES = {"AAPL": 1.0, "GOOGL": 2.0, "MSFT": 3.0}
T0 = "2026-01-02T00:00:00.000Z"
T1 = "2026-01-02T00:00:05.000Z"
DEADLINE = 10.0
TH = hash_token("tok")


@pytest.fixture
async def store(redis_boundary: RedisClient) -> SessionStore:
    s = SessionStore(redis_boundary, ttl_s=3600)
    await s.create("s", TH, HOLDINGS, value(HOLDINGS, PRICES, 0), T0)
    return s


class Events:
    """The session's channel as a client sees it: each event and its version, one more than
    the last event's (no client action came in between: those move the version silently), or
    the same for a second event of one change."""

    def __init__(self, ps: PubSub) -> None:
        self.ps = ps
        self.version = 1  # the session's version at creation

    async def next(self, same_change: bool = False) -> tuple[int, dict[str, Any]]:
        msg = await self.ps.get_message(timeout=DEADLINE)
        assert msg is not None and msg["type"] == "smessage"
        head, _, body = msg["data"].decode().partition("\n")
        version = int(head)
        assert version == self.version + (0 if same_change else 1)
        self.version = version
        return version, json.loads(body)


@pytest.fixture
async def events(redis_client: Redis) -> AsyncIterator[Events]:
    async with redis_client.pubsub() as ps:
        await ps.ssubscribe(keys.session_events("s"))
        await ps.get_message(timeout=DEADLINE)  # the subscribe confirmation
        yield Events(ps)


async def _ends(
    store: SessionStore,
    ps: Events,
    end: Callable[[RunSnapshot], Awaitable[object]],
    same_change: bool = False,
) -> tuple[RunSnapshot, object, tuple[int, dict[str, Any]], dict[str, Any]]:
    """Start run "r1" on AAPL, end it with ``end``; its snapshot, what ``end`` returned, the
    event it published and the state after."""
    snap = await store.start_analysis("s", TH, "AAPL", "r1", T0)
    await ps.next()  # analysis_started
    got = await end(snap)
    event = await ps.next(same_change)
    state = await store.read("s", TH, T1)
    ps.version = state["version"]  # the read is a client action
    return snap, got, event, state


async def _new_holdings(
    store: SessionStore, events: Events, holdings: dict[str, float] = HOLDINGS
) -> None:
    """New holdings: the basis moves (its portfolio_update is read off the channel)."""
    await store.set_holdings("s", TH, holdings, value(holdings, PRICES, 0), T0)
    assert (await events.next())[1]["type"] == "portfolio_update"


def _current(run_id: str, started_at: str, basis: int, status: str) -> dict[str, Any]:
    return {"ticker": "AAPL", "started_at": started_at, "run_id": run_id,
            "basis_version": basis, "status": status}  # fmt: skip


async def test_a_cancelled_run(store: SessionStore, events: Events) -> None:
    snap, got, (v, event), state = await _ends(
        store, events, lambda _: store.cancel_analysis("s", TH, T1)
    )
    assert got == "r1"
    assert event == {"type": "analysis_cancelled", "ticker": "AAPL", "run_id": "r1",
                     "reason": "cancelled"}  # fmt: skip
    assert state["current_analysis"] == _current("r1", T0, snap.basis_version, "cancelled")
    assert state["version"] == v + 1  # the read that followed is a client action too
    assert await store.cancel_analysis("s", TH, T1) is None  # nothing runs any more


async def test_a_run_whose_inputs_cannot_be_built_fails_with_the_reason(
    store: SessionStore, events: Events
) -> None:
    async def move_then_fail(snap: RunSnapshot) -> object:
        await _new_holdings(store, events)  # the stored run keeps the basis it was pinned to
        return await store.fail_analysis("s", snap.run_id, "insufficient_history")

    snap, got, (v, event), state = await _ends(store, events, move_then_fail)
    assert got == "failed"
    assert event == {"type": "analysis_failed", "ticker": "AAPL", "run_id": "r1",
                     "reason": "insufficient_history"}  # fmt: skip
    assert state["current_analysis"] == _current("r1", T0, snap.basis_version, "failed")
    assert state["version"] == v + 1
    assert await store.fail_analysis("s", "r1", "insufficient_history") == "superseded"
    assert await store.fail_analysis("nobody", "r1", "insufficient_history") == "gone"


async def test_a_restart_after_the_ticker_was_sold_fails_it(
    store: SessionStore, events: Events
) -> None:
    async def sell_then_restart(snap: RunSnapshot) -> object:
        await _new_holdings(store, events, {"GOOGL": 50.0, "MSFT": 75.0})
        return await store.restart_analysis("s", snap.run_id, "r2", 3, T1)

    snap, got, (v, event), state = await _ends(store, events, sell_then_restart)
    assert got == "failed"
    assert event == {"type": "analysis_failed", "ticker": "AAPL", "run_id": "r1",
                     "reason": "not_in_portfolio"}  # fmt: skip
    assert state["current_analysis"] == _current("r1", T0, snap.basis_version, "failed")
    assert state["version"] == v + 1


async def test_a_restart_on_a_moved_basis_pins_the_new_one(
    store: SessionStore, events: Events
) -> None:
    async def move_then_restart(snap: RunSnapshot) -> object:
        await _new_holdings(store, events)
        return await store.restart_analysis("s", snap.run_id, "r2", 3, T1)

    snap, got, (v, event), state = await _ends(store, events, move_then_restart)
    assert isinstance(got, RunSnapshot)
    assert (got.run_id, got.basis_version) == ("r2", snap.basis_version + 1)
    assert event == {"type": "analysis_restarted", "ticker": "AAPL", "run_id": "r2",
                     "basis_version": got.basis_version, "reason": "basis_changed"}  # fmt: skip
    assert state["current_analysis"] == _current("r2", T1, got.basis_version, "running")
    assert state["version"] == v + 1
    # past the bound the run fails with unstable_basis, stored as failed
    await _new_holdings(store, events)
    assert await store.restart_analysis("s", "r2", "r3", 1, T1) == "failed"
    _, failed = await events.next()
    assert failed["reason"] == "unstable_basis"
    after = await store.read("s", TH, T1)
    assert after["version"] == events.version + 1
    assert after["current_analysis"] == _current("r2", T1, got.basis_version, "failed")


async def test_a_completed_run(store: SessionStore, events: Events) -> None:
    async def all_five(snap: RunSnapshot) -> object:
        results = [(f"r1:m{i}", json.dumps({"id": f"r1:m{i}", "run_id": "r1"})) for i in range(5)]
        statuses = await store.append_results("s", "r1", snap.basis_version, results, 5)
        for _ in range(5):
            assert (await events.next())[1]["type"] == "analysis_result"
        return statuses

    snap, got, (v, event), state = await _ends(store, events, all_five, same_change=True)
    assert got == ["ok", "ok", "ok", "ok", "complete"]
    assert event == {"type": "analysis_complete", "ticker": "AAPL", "run_id": "r1"}
    assert state["current_analysis"] == _current("r1", T0, snap.basis_version, "complete")
    assert [r["id"] for r in state["analysis_results"]] == [f"r1:m{i}" for i in range(5)]
    assert state["version"] == v + 1
