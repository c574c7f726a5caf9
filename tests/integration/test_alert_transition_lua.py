"""``alert_transition.lua`` and ``alert_add.lua`` agree with ``rules.transition`` and
``rules.initial_state`` on random sequences, on a real redis-server: the same outcomes and the
same stored state at every step. The backtest replays rules with ``transition`` and promises
the fires the live monitor (the script) emits, so this equality is what it rests on."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.rules import (
    AlertCondition,
    AlertState,
    Evaluation,
    Outcome,
    initial_state,
    snoozed,
    transition,
)
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.quotes import StockData

T0 = datetime(2026, 1, 5, tzinfo=UTC)

# one step: an observation (obs advance, possibly 0 = a duplicate; tri-state; time advance;
# snoozed?) or an edit of the alert (its state reset)
observation = st.tuples(
    st.just("obs"),
    st.integers(0, 3),
    st.sampled_from(["true", "rearm", "margin"]),
    st.floats(0, 20),
    st.booleans(),
)
edit = st.tuples(st.just("edit"), st.sampled_from(["above", "crosses_above", "crosses_below"]))
steps = st.lists(st.one_of(observation, observation, observation, edit), max_size=30)


def quote() -> StockData:
    return StockData(
        symbol="AAPL", price=1.0, volume=1, timestamp=T0, high=1.0, low=1.0, open=1.0, close=1.0
    )


async def check(
    store: RedisAlertStore,
    comparison: str,
    cooldown: float,
    expires: float | None,
    plan: list[tuple[object, ...]],
) -> None:
    exp = None if expires is None else datetime.fromtimestamp(expires, UTC)
    alert = AlertCondition(
        symbol="AAPL", alert_type="price_threshold", threshold=1.0, comparison=comparison,
        id=uuid.uuid4().hex, cooldown_s=cooldown, expires_at=exp,
    )  # fmt: skip
    await store.add(alert)
    model = initial_state(alert)
    obs, at = 0, 0.0
    for step in plan:
        if step[0] == "edit":
            alert = alert.model_copy(update={"comparison": step[1]})
            await store.add(alert, reset=True)
            fresh = initial_state(alert)
            model = AlertState(fresh.armed, None, model.last_fired_at, model.muted)
        else:
            _, d_obs, tri, d_at, muted = step
            assert isinstance(d_obs, int) and isinstance(d_at, float)
            obs, at = obs + d_obs, at + d_at
            ev = Evaluation(tri == "true", tri == "rearm", 1.0)
            snooze = at + 1 if muted else None
            model, expected = transition(
                model, obs=obs, ev=ev, at=at, cooldown_s=cooldown, expires_at=expires,
                snoozed_until=snooze,
            )  # fmt: skip
            fired = (
                FiredAlert.of(alert, 1.0, quote(), obs, muted=snoozed(at, snooze))
                if ev.truth
                else None
            )
            got = await store.apply(
                alert, obs=obs, truth=ev.truth, at=at, fired=fired, rearm=ev.rearm
            )
            assert got is expected, (step, got, expected)
            if got is Outcome.EXPIRED:
                return
        stored = (await store.states([alert.id]))[alert.id]
        assert stored == model, (step, stored, model)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    comparison=st.sampled_from(["above", "below", "crosses_above", "crosses_below"]),
    cooldown=st.sampled_from([0.0, 5.0, 30.0]),
    expires=st.none() | st.floats(10, 200),
    plan=steps,
)
def test_the_lua_transition_equals_the_python_reference(
    redis_url: str,
    comparison: str,
    cooldown: float,
    expires: float | None,
    plan: list[tuple[object, ...]],
) -> None:
    async def main() -> None:
        client = RedisClient.from_url(redis_url)
        try:
            await check(RedisAlertStore(client), comparison, cooldown, expires, plan)
        finally:
            await client.aclose()

    asyncio.run(main())


async def test_a_muted_fire_is_recorded_but_not_queued_for_delivery(
    redis_boundary: RedisClient,
) -> None:
    store = RedisAlertStore(redis_boundary)
    alert = AlertCondition(
        symbol="AAPL", alert_type="price_threshold", threshold=1.0, comparison="above"
    )
    await store.add(alert)
    fired = FiredAlert.of(alert, 1.0, quote(), 1, muted=True)
    assert await store.apply(alert, obs=1, truth=True, at=1.0, fired=fired) is Outcome.FIRED
    assert await redis_boundary.call("XLEN", keys.ALERT_OUTBOX) == 0
    [recorded] = await store.history(None, 10)
    assert recorded.muted and recorded.id == fired.id
    loud = FiredAlert.of(alert, 1.0, quote(), 3, muted=False)
    assert await store.apply(alert, obs=2, truth=False, at=2.0, fired=None) is Outcome.REARMED
    assert await store.apply(alert, obs=3, truth=True, at=3.0, fired=loud) is Outcome.FIRED
    assert await redis_boundary.call("XLEN", keys.ALERT_OUTBOX) == 1
