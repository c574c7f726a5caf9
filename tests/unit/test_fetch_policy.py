"""The policy parts on a fake clock: retry schedule, token bucket, breaker, clocks, validation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial

import pytest

from marketpulse.errors import CircuitOpen, InvalidQuote, PermanentSourceError, TransientSourceError
from marketpulse.infra.rate_limit import TokenBucket
from marketpulse.infra.retry import Backoff, RetryPolicy, call_with_retry, retry_after_s
from marketpulse.market.circuit import CircuitBreaker
from marketpulse.market.clock import ManualClock, WallTickClock
from marketpulse.market.provider_guard import FetchPolicy, GuardedProvider
from marketpulse.market.quotes import Bar, StockData
from marketpulse.market.validation import validate_quote
from support.fakes import FakeTime


def test_retry_only_transient_and_bounded() -> None:
    p = RetryPolicy(max_attempts=3, base_s=1.0, cap_s=3.0)
    hi = lambda lo, h: h  # noqa: E731 - jitter pinned to its ceiling
    assert p.delay(1, TransientSourceError("x"), hi) == 1.0
    assert p.delay(2, TransientSourceError("x"), hi) == 2.0
    assert p.delay(3, TransientSourceError("x"), hi) is None
    assert p.delay(1, PermanentSourceError("x"), hi) is None
    assert p.delay(1, TransientSourceError("x", retry_after=60), hi) == 30.0  # capped
    assert RetryPolicy(max_attempts=9, base_s=1.0, cap_s=3.0).ceiling(6) == 3.0


def test_backoff_schedule_doubles_to_its_cap_with_full_jitter() -> None:
    b = Backoff(base_s=0.5, cap_s=3.0)
    assert [b.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    bounds: list[tuple[float, float]] = []

    def record(lo: float, hi: float) -> float:
        bounds.append((lo, hi))
        return hi / 2

    assert [b.delay(n, record) for n in (1, 4)] == [0.25, 1.5]
    assert bounds == [(0.0, 0.5), (0.0, 3.0)]  # full jitter: anywhere from 0 to the ceiling
    assert all(0.0 <= b.delay(9) <= 3.0 for _ in range(200))
    exact = Backoff(base_s=0.05, cap_s=2.0, jitter=False)
    assert [exact.delay(n, record) for n in (1, 2, 7)] == [0.05, 0.1, 2.0]
    assert len(bounds) == 2  # no draw without jitter
    with pytest.raises(ValueError, match="non-negative"):
        Backoff(base_s=-1, cap_s=1)


def test_retry_after_wins_over_the_backoff_and_is_capped() -> None:
    p = RetryPolicy(max_attempts=5, base_s=1.0, cap_s=2.0, retry_after_cap_s=30.0)
    never = lambda lo, hi: pytest.fail("no jitter is drawn when the server says when")  # noqa: E731
    assert p.delay(1, TransientSourceError("x", retry_after=7.0), never) == 7.0  # above the cap
    assert p.delay(1, TransientSourceError("x", retry_after=0.0), never) == 0.0
    assert p.delay(1, TransientSourceError("x", retry_after=600.0), never) == 30.0
    assert retry_after_s(" 12 ") == 12.0 and retry_after_s(None) is None
    now = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("Fri, 02 Jan 2026 12:00:05 GMT", now) == 5.0
    assert retry_after_s("soon") is None


async def test_call_with_retry_retries_transient_errors_only_and_reports_each_wait() -> None:
    fake = FakeTime()
    seen: list[tuple[int, float]] = []
    answers: list[Exception | str] = [TransientSourceError("a"), TransientSourceError("b"), "ok"]

    async def call(attempt: int) -> str:
        answer = answers[attempt - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    policy = RetryPolicy(max_attempts=3, base_s=1.0, cap_s=10.0)
    got = await call_with_retry(
        call,
        policy,
        sleep=fake.sleep,
        uniform=lambda lo, hi: hi,
        on_retry=lambda n, _e, d: seen.append((n, d)),
    )
    assert (got, seen, fake.t) == ("ok", [(1, 1.0), (2, 2.0)], 3.0)
    answers[:] = [TransientSourceError("a")] * 3
    with pytest.raises(TransientSourceError):
        await call_with_retry(call, policy, sleep=fake.sleep)
    answers[:] = [PermanentSourceError("gone"), "never"]
    with pytest.raises(PermanentSourceError):
        await call_with_retry(call, policy, sleep=fake.sleep)


async def test_token_bucket_rate_on_fake_time() -> None:
    fake = FakeTime()
    bucket = TokenBucket(10.0, 5, now=fake.now, sleep=fake.sleep)
    times = []
    for _ in range(25):
        await bucket.acquire()
        times.append(fake.t)
    assert times[4] == 0.0  # the burst is free
    assert times[-1] == pytest.approx(2.0)  # 20 more at 10/s


async def test_token_bucket_try_acquire_refuses_at_once_and_refills_on_fake_time() -> None:
    fake = FakeTime()
    bucket = TokenBucket(10.0, 5, now=fake.now, sleep=fake.sleep)
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    fake.t = 0.1  # one token back at 10/s
    assert [bucket.try_acquire(), bucket.try_acquire()] == [True, False]
    fake.t = 100.0  # never more than the burst
    assert sum(bucket.try_acquire() for _ in range(9)) == 5


async def test_token_bucket_try_acquire_never_jumps_a_waiter() -> None:
    fake = FakeTime()
    waiting, go = asyncio.Event(), asyncio.Event()

    async def held_sleep(s: float) -> None:
        waiting.set()
        await go.wait()
        fake.t += s

    bucket = TokenBucket(10.0, 1, now=fake.now, sleep=held_sleep)
    await bucket.acquire()
    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        tg.create_task(bucket.acquire())
        await waiting.wait()
        fake.t = 10.0  # a token is there, but the waiter came first
        assert not bucket.try_acquire()
        go.set()


def test_breaker_cycle() -> None:
    fake = FakeTime()
    b = CircuitBreaker("p", failure_threshold=2, cooldown_s=10.0, now=fake.now)
    b.before_call()
    b.on_failure()
    assert b.state == "closed"
    b.before_call()
    b.on_failure()
    assert b.state == "open"
    with pytest.raises(CircuitOpen):
        b.before_call()
    fake.t = 10.0
    assert b.state == "half_open"
    b.before_call()  # the single trial
    with pytest.raises(CircuitOpen):
        b.before_call()
    b.on_failure()
    assert b.state == "open"  # reopened for another cool-down
    fake.t = 20.0
    b.before_call()
    b.on_success()
    assert b.state == "closed"


async def test_clocks() -> None:
    t = [100.0]
    wall = WallTickClock(5.0, now=lambda: t[0])
    assert await wall.tick() == 0
    t[0] = 112.0
    assert await wall.tick() == 2
    manual = ManualClock()
    manual.advance(3)
    assert await manual.tick() == 3
    manual.set(9)
    assert await manual.tick() == 9


def q(price: float, high: float, low: float) -> StockData:
    return StockData(symbol="A", price=price, volume=1, timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                     high=high, low=low, open=price, close=price)  # fmt: skip


def test_validation() -> None:
    validate_quote(q(10, 11, 9), q(12, 12, 12))
    with pytest.raises(InvalidQuote):
        validate_quote(q(10, 9, 11), None)  # high < low
    with pytest.raises(InvalidQuote):
        validate_quote(q(float("nan"), 11, 9), None)
    with pytest.raises(InvalidQuote):
        validate_quote(q(1000, 1000, 1000), q(10, 10, 10))  # x100 jump


class Failing:
    """A provider we own whose quotes always fail transiently."""

    name = "failing"
    live = True

    async def quote(self, symbol: str, tick: int) -> StockData:
        raise TransientSourceError("down")

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        raise PermanentSourceError("none")


async def test_cancelled_half_open_trial_frees_the_breaker() -> None:
    fake = FakeTime()
    waiting = asyncio.Event()

    async def blocked_sleep(s: float) -> None:
        waiting.set()
        await asyncio.Event().wait()  # the rate limiter waits for a token that never comes

    pol = FetchPolicy(
        retry=RetryPolicy(max_attempts=1), rate_per_s=0.001, burst=1, breaker_failures=1,
        breaker_cooldown_s=10.0, now=fake.now, sleep=blocked_sleep,
    )  # fmt: skip
    provider = Failing()
    guard = GuardedProvider(provider, pol)
    with pytest.raises(TransientSourceError):
        await guard.call("quote", "A", partial(provider.quote, "A", 0))
    assert guard.breaker.state == "open"
    fake.t = 11.0
    trial = asyncio.create_task(guard.call("quote", "A", partial(provider.quote, "A", 0)))
    async with asyncio.timeout(5):
        await waiting.wait()  # admitted as the half-open trial, now waiting on the bucket
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert guard.breaker.state == "half_open"
    guard.breaker.before_call()  # a new trial is admitted, not refused forever


class Steady:
    """A provider we own that always answers; ``live`` set per test."""

    name = "steady"

    def __init__(self, live: bool) -> None:
        self.live = live

    async def quote(self, symbol: str, tick: int) -> StockData:
        return q(10, 11, 9)

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        return []


@pytest.mark.parametrize(("live", "waited"), [(True, 0.3), (False, 0.0)])
async def test_only_a_live_provider_waits_on_its_rate_limit(live: bool, waited: float) -> None:
    """A tick source computes in memory: it takes no token, so the monitor keeps the pace of
    the market (5 symbols at 2 ticks a second is twice the default 5 calls a second)."""
    fake = FakeTime()
    provider = Steady(live)
    guard = GuardedProvider(provider, FetchPolicy(rate_per_s=10.0, burst=2, now=fake.now,
                                                  sleep=fake.sleep))  # fmt: skip
    for _ in range(5):
        await guard.call("quote", "A", partial(provider.quote, "A", 0))
    assert fake.t == pytest.approx(waited)  # the burst of 2 is free, then 3 at 10/s
