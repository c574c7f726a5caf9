"""The WebSocket limits' bookkeeping (infra/ws/limits.py), on a manual clock: the message rate's
three verdicts and its refill; the socket counts refuse past each limit and forget a key at
zero, so the maps hold only the sockets open now."""

from __future__ import annotations

import pytest

from marketpulse.infra.ws.limits import ConnectionCounts, MessageRate, WsLimits


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_rate_handles_its_burst_then_limits_then_closes_past_the_hard_burst() -> None:
    clock = Clock()
    rate = MessageRate(
        WsLimits(msg_rate=1.0, msg_burst=2, msg_hard_rate=2.0, msg_hard_burst=4), now=clock
    )
    assert [rate.check() for _ in range(5)] == ["ok", "ok", "limited", "limited", "close"]
    clock.t += 1.0  # one soft token and two hard ones back
    assert [rate.check() for _ in range(3)] == ["ok", "limited", "close"]


def test_default_bursts_are_twice_the_rates() -> None:
    rate = MessageRate(WsLimits(msg_rate=20, msg_hard_rate=100), now=Clock())
    verdicts = [rate.check() for _ in range(201)]
    assert verdicts.count("ok") == 40
    assert verdicts.count("limited") == 160
    assert verdicts[-1] == "close"


def test_counts_refuse_past_each_limit_and_forget_at_zero() -> None:
    counts = ConnectionCounts(WsLimits(max_per_session=2, max_per_client=3))
    with counts.held("a", "s1"), counts.held("a", "s1"):
        assert counts.refusal("a", "s1") == "at most 2 open sockets per session"
        assert counts.refusal("b", "s1") == "at most 2 open sockets per session"
        assert counts.refusal("a", "s2") is None
        with counts.held("a", None):
            assert counts.refusal("a", "s2") == "at most 3 open sockets per client address"
            assert counts.refusal("b", None) is None
    assert counts.per_client == {} and counts.per_session == {}


def test_a_count_is_released_when_the_block_raises() -> None:
    counts = ConnectionCounts()
    with pytest.raises(RuntimeError), counts.held("a", "s"):
        raise RuntimeError
    assert counts.per_client == {} and counts.per_session == {}
