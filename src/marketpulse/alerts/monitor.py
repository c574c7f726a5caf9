"""The monitor: fetch the watched symbols, cache their quotes, and feed the alert engine.

``MonitorService`` is what the app runs; ``StockMonitor`` (``stock_monitor.py``) is the seed's
API on top of it.

Guarantees:

- One polling instance at a time: a Redis lease (``SET NX PX``, renewed by a script that checks
  the owner). Without Redis (standalone) the process is always the poller.
- With a market clock (``simulated`` / ``replay``) every tick from the last one evaluated up to
  the current tick is evaluated exactly once, in order (the cursor lives in Redis), so a replay
  is deterministic. Without a clock (live sources) it polls every ``interval_s`` seconds.
- Symbols are fetched concurrently, at most ``concurrency`` at a time; a symbol whose quote
  cannot be had is logged and skipped, never blocks the others.
- Each observed quote is handed to the ``publisher`` (if any) before its alerts are evaluated:
  the app publishes it for the dashboards (``market/events.py``). A failed publish is
  logged and never stops the evaluation.
- The watched symbols are the alert store's (Redis: they survive restarts); add and remove take
  effect from the next cycle. Given a ``watchlist``, the poller's first cycle monitors it if the
  symbols were never chosen (``AlertStore.seed_symbols``): a first run shows a live market, and
  a watchlist emptied on purpose stays empty across restarts.
- A Redis that stops answering (the alert store's, the cache's, the lease's) is logged once
  naming its URL and once when it answers again (``infra/redis/outage.py``), not once per
  operation; the cycle that hit it is skipped (or, for the cache, the quote goes uncached) and
  the next one retries.
- Graceful stop: once ``stop`` is set no new cycle starts; the running one (with an in-memory
  alert store, its inline notifications included; on Redis the fires are delivered from the
  outbox by ``AlertManager.run_deliveries``, not here) gets ``shutdown_s`` to finish, then is
  cancelled. A cycle catching up on several
  ticks ends after the tick it is evaluating (the cursor says where the next poller resumes).
  No task outlives ``run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from marketpulse.alerts.engine import AlertManager
from marketpulse.errors import LimitReached, MarketPulseError, RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.lease import Lease
from marketpulse.infra.redis.outage import OutageLog
from marketpulse.market.clock import MarketClock
from marketpulse.market.ports import QuoteFeed
from marketpulse.market.quotes import StockData
from marketpulse.market.symbols import check_symbol

log = logging.getLogger(__name__)


class QuoteSink(Protocol):
    async def set_stock_data(self, symbol: str, data: StockData) -> None: ...


class QuotePublisher(Protocol):
    """Where observed quotes go live (raises ``MarketPulseError`` when it could not)."""

    async def publish(self, quote: StockData) -> None: ...


class MonitorService:
    def __init__(
        self,
        feed: QuoteFeed,
        alerts: AlertManager,
        *,
        redis: RedisClient | None = None,
        clock: MarketClock | None = None,
        cache: QuoteSink | None = None,
        interval_s: float = 5.0,
        concurrency: int = 8,
        lease_ms: int = 15_000,
        shutdown_s: float = 5.0,
        max_backlog: int = 10_000,
        on_quote: Callable[[StockData], None] | None = None,
        publisher: QuotePublisher | None = None,
        watchlist: Sequence[str] = (),
        max_symbols: int = 0,
    ) -> None:
        self.feed = feed
        self.alerts = alerts
        self.clock = clock
        self.cache = cache
        self.interval_s = interval_s
        self.shutdown_s = shutdown_s
        self._lease = (
            Lease(redis, keys.MONITOR_LEASE, ttl_s=lease_ms / 1000) if redis is not None else None
        )
        self._gate = asyncio.Semaphore(concurrency)
        self._max_backlog = max_backlog
        self._on_quote = on_quote
        self._publisher = publisher
        self._processed: int | None = None  # last tick this instance evaluated
        self._polling = False
        self._stop: asyncio.Event | None = None  # run's stop event: ends a catch-up early
        self.max_symbols = max_symbols  # 0: no cap
        self._watchlist = [check_symbol(s) for s in watchlist]
        self._seeded = not self._watchlist
        self.outages = OutageLog("monitor")
        self._url = redis.url if redis is not None else None
        self._cache_url: str | None = getattr(cache, "url", None)

    # -- symbols -----------------------------------------------------------------------------

    async def add_symbol(self, symbol: str) -> bool:
        """Watch ``symbol`` (validated, upper-cased); False if it was already watched. Raises
        ``LimitReached`` (``too_many_symbols``) for a new symbol past ``max_symbols``."""
        added = await self.alerts.store.add_symbol(check_symbol(symbol), cap=self.max_symbols)
        if added is None:
            raise LimitReached(
                f"at most {self.max_symbols} monitored symbols; remove one first",
                "too_many_symbols",
            )
        return added

    async def remove_symbol(self, symbol: str) -> bool:
        return await self.alerts.store.remove_symbol(check_symbol(symbol))

    async def symbols(self) -> list[str]:
        return await self.alerts.store.symbols()

    # -- lease and cursor --------------------------------------------------------------------

    async def holds_lease(self) -> bool:
        """Take or renew the polling lease; True if this instance is the poller."""
        if self._lease is None:
            return True
        try:
            held = await self._lease.acquire()
        except RedisUnavailable as exc:
            self.outages.failed(exc.url or self._url or "redis", exc)
            return False
        self.outages.answered(self._url)
        return held

    async def release_lease(self) -> None:
        if self._lease is None:
            return
        try:
            await self._lease.release()
        except RedisUnavailable as exc:
            log.warning("could not release the monitor lease: %r", exc)

    async def _last_tick(self) -> int | None:
        return await self.alerts.store.cursor()

    async def _done_tick(self, tick: int) -> None:
        await self.alerts.store.advance_cursor(tick)

    # -- the loop ----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One cycle: every pending tick (or one poll); returns the quotes evaluated."""
        if not await self.holds_lease():
            self._polling = False
            return 0
        if not self._polling:  # (again) the poller: what happened meanwhile was not observed here
            self.alerts.forget()
            self._polling = True
        await self.alerts.sync()
        self.outages.answered(self.alerts.url)
        if not self._seeded:
            added = await self.alerts.store.seed_symbols(self._watchlist)
            self._seeded = True
            if added:
                log.info("monitoring the default watchlist: %s", ", ".join(added))
        if self.clock is None:
            return await self._observe(await self.symbols(), None)
        # the clock before the symbols: a symbol removed before the clock moved is not evaluated
        # at the new tick
        current = await self.clock.tick()
        symbols = await self.symbols()
        last = await self._last_tick()
        if last is None:
            last = current - 1
        if current - last > self._max_backlog:
            log.warning("monitor is %d ticks behind; skipping to the last %d", current - last,
                        self._max_backlog)  # fmt: skip
            last = current - self._max_backlog
        if last != self._processed:
            self.alerts.forget()  # ticks evaluated elsewhere since ours: re-derive every truth
        evaluated = 0
        for tick in range(last + 1, current + 1):
            evaluated += await self._observe(symbols, tick)
            await self._done_tick(tick)
            self._processed = tick
            if tick < current and self._stop is not None and self._stop.is_set():
                break  # stopping: the next poller continues from the cursor
            if tick < current and not await self.holds_lease():
                break  # lost the lease mid catch-up: the new poller continues from the cursor
        return evaluated

    async def _observe(self, symbols: Sequence[str], tick: int | None) -> int:
        done = 0

        async def one(symbol: str) -> None:
            nonlocal done
            async with self._gate:
                try:
                    quote = await self.feed.fetch_stock_data(symbol, tick=tick)
                except MarketPulseError as exc:
                    log.warning("no quote for %s at tick %s: %s", symbol, tick, exc.message)
                    return
            if self._on_quote is not None:
                self._on_quote(quote)
            if self._publisher is not None:
                try:
                    await self._publisher.publish(quote)
                except MarketPulseError as exc:
                    log.warning("could not publish the quote of %s: %s", symbol, exc.message)
            if self.cache is not None:
                try:
                    await self.cache.set_stock_data(symbol, quote)
                except RedisUnavailable as exc:
                    self.outages.failed(exc.url or self._cache_url or "quote cache", exc)
                else:
                    self.outages.answered(self._cache_url)
            await self.alerts.check_alerts(quote, obs=tick)
            done += 1

        async with asyncio.TaskGroup() as tg:
            for symbol in symbols:
                tg.create_task(one(symbol))
        return done

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until ``stop`` is set; see the module docstring for the shutdown bound."""
        self._stop = stop
        try:
            while not stop.is_set():
                await self._cycle(stop)
                if stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)
        finally:
            await self.release_lease()

    async def cycle(self) -> int:
        """``run_once`` with its expected failures reported, not raised: a Redis that does not
        answer goes to ``outages`` (logged once per outage), another error of ours is logged.
        Returns the quotes evaluated (0 when the cycle failed)."""
        try:
            return await self.run_once()
        except* RedisUnavailable as group:  # the boundary names the Redis that failed
            for exc in _leaves(group):
                self.outages.failed(getattr(exc, "url", None) or self.alerts.url or "redis", exc)
        except* MarketPulseError as group:
            for exc in _leaves(group):
                log.error("monitor cycle failed: %r", exc)
        return 0

    async def _cycle(self, stop: asyncio.Event) -> None:
        cycle = asyncio.create_task(self.cycle())
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({cycle, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not cycle.done():  # stopping: let in-flight notifications finish, within bound
                await asyncio.wait({cycle}, timeout=self.shutdown_s)
        finally:
            for task in (cycle, waiter):
                task.cancel()
            await asyncio.gather(cycle, waiter, return_exceptions=True)
        if not cycle.cancelled() and (exc := cycle.exception()) is not None:
            raise exc  # not one of ours: a bug, which ends the loop


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out
