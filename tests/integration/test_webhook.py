"""The alert webhook against a local HTTP server: it retries with the market providers' policy
(full jitter, ``Retry-After`` honoured, bounded attempts) and refuses a 4xx at once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.notifiers import NotificationFailed, WebhookNotifier
from marketpulse.alerts.rules import AlertCondition
from marketpulse.infra.retry import RetryPolicy
from marketpulse.market.quotes import StockData
from support.webhook import WebhookReceiver

AT = datetime(2026, 1, 5, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base_s=0.5, cap_s=4.0)


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as h:
        yield h


def fired() -> FiredAlert:
    alert = AlertCondition(
        symbol="M&M.NS", alert_type="price_threshold", threshold=100, comparison="above"
    )
    q = StockData(
        symbol="M&M.NS", price=101.0, volume=10, timestamp=AT, high=101.0, low=99.0,
        open=100.0, close=100.0, source="test",
    )  # fmt: skip
    return FiredAlert.of(alert, 101.0, q, 1)


class Waits:
    """A fake sleep that records each wait, and a jitter pinned to its ceiling."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.draws: list[tuple[float, float]] = []

    async def sleep(self, s: float) -> None:
        self.waits.append(s)
        await asyncio.sleep(0)  # wait-ok: yields to the loop, waits for nothing

    def uniform(self, lo: float, hi: float) -> float:
        self.draws.append((lo, hi))
        return hi


def notifier(hook: WebhookReceiver, waits: Waits) -> WebhookNotifier:
    return WebhookNotifier(hook.url, retry=POLICY, sleep=waits.sleep, uniform=waits.uniform)


async def test_transient_answers_are_retried_with_full_jitter_then_delivered(
    hook: WebhookReceiver,
) -> None:
    waits = Waits()
    hook.script.extend([(503, {}), (429, {})])
    n = notifier(hook, waits)
    try:
        await n.send(alert := fired())
    finally:
        await n.close()
    assert len(hook.bodies) == 3 and hook.bodies[-1]["id"] == alert.id
    assert hook.keys == [alert.id] * 3  # every attempt carries the fire id as its key
    assert json.loads(alert.model_dump_json())["symbol"] == hook.bodies[0]["symbol"] == "M&M.NS"
    assert waits.draws == [(0.0, 0.5), (0.0, 1.0)]  # the policy's schedule, fully jittered
    assert waits.waits == [0.5, 1.0]


async def test_retry_after_wins_over_the_jitter(hook: WebhookReceiver) -> None:
    waits = Waits()
    hook.script.append((503, {"Retry-After": "7"}))
    n = notifier(hook, waits)
    try:
        await n.send(fired())
    finally:
        await n.close()
    assert (len(hook.bodies), waits.waits, waits.draws) == (2, [7.0], [])


async def test_it_gives_up_after_the_policy_attempts(hook: WebhookReceiver) -> None:
    waits = Waits()
    hook.script.extend([(500, {})] * 5)
    n = notifier(hook, waits)
    try:
        with pytest.raises(NotificationFailed, match="after 3 attempts"):
            await n.send(fired())
    finally:
        await n.close()
    assert len(hook.bodies) == 3 and len(waits.waits) == 2


async def test_a_4xx_fails_at_once(hook: WebhookReceiver) -> None:
    waits = Waits()
    hook.script.append((404, {}))
    n = notifier(hook, waits)
    try:
        with pytest.raises(NotificationFailed, match="HTTP 404"):
            await n.send(fired())
    finally:
        await n.close()
    assert len(hook.bodies) == 1 and waits.waits == []


async def test_an_unreachable_hook_is_transient_and_bounded() -> None:
    waits = Waits()
    n = WebhookNotifier(
        "http://127.0.0.1:9/hook", retry=POLICY, sleep=waits.sleep, uniform=waits.uniform
    )
    try:
        with pytest.raises(NotificationFailed, match="unreachable"):
            await n.send(fired())
    finally:
        await n.close()
    assert waits.waits == [0.5, 1.0]
