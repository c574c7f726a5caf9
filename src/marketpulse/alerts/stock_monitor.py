"""The seed's ``StockMonitor``: monitoring in the background of the caller's own code.

``start_monitoring(symbols)`` adds the symbols, starts the monitoring loop (``MonitorService``)
as one task the monitor holds, and returns. ``await stop_monitoring()`` stops it gracefully
(the cycle in flight gets the service's ``shutdown_s``) and returns once it has ended; so does
leaving ``async with StockMonitor(...) as monitor:``.

Guarantees:

- At most one loop per monitor; ``start_monitoring`` while it runs only adds the symbols.
- On Redis the monitor's task also runs the alert manager's deliveries from the outbox
  (``AlertManager.run_deliveries``): every channel gets each fire at least once; a fire not yet
  delivered when the monitor stops stays in the outbox for the next run (or another instance).
- Nothing is lost silently: an error that ends the loop is logged (ERROR, with its traceback)
  when it happens, and raised by the next ``stop_monitoring()``. Redis outages and failed
  quotes do not end it: they are logged as the service logs them, and the loop retries.
- ``stop_monitoring()`` called without ``await`` (the seed's example does) asks the loop to
  stop and returns at once; it raises at once if the loop had already failed. The loop then
  winds down by itself, but nothing waits for it: when the caller's coroutine is the one
  ``asyncio.run`` runs, asyncio cancels it on the way out (the cycle in flight is cut short,
  the monitor's clients are still closed). ``await`` it, or use ``async with``, to wait.
- A new alert is evaluated at once (``AlertManager.evaluate_now``): while the loop runs, the
  cache manager (if it has ``latest``) gives the alert manager the latest quotes, unless it
  has its own; its first sync (the loop's first cycle, normally) evaluates every alert,
  those added before monitoring started included.
- The monitor connects the cache manager when it starts and closes it, and the Redis client an
  ``AlertManager()`` built for itself, when the loop ends (both reconnect if used again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Generator, Sequence
from types import TracebackType
from typing import Any

from marketpulse.alerts.engine import AlertManager, LatestQuotes
from marketpulse.alerts.indicator_feed import IndicatorFeed
from marketpulse.alerts.monitor import MonitorService, QuoteSink
from marketpulse.market.clock import MarketClock
from marketpulse.market.ports import QuoteFeed
from marketpulse.market.quotes import StockData

log = logging.getLogger(__name__)


class Stopping:
    """What ``stop_monitoring()`` returns: the stop is already asked for; awaiting this waits
    until the loop has ended and raises the error that ended it, if one did."""

    __slots__ = ("_wait",)

    def __init__(self, wait: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._wait = wait

    def __await__(self) -> Generator[Any]:
        return self._wait().__await__()


class StockMonitor:
    """Fetch, cache and evaluate the monitored symbols until stopped (see the module docstring).

    Follows the fetcher's market clock when its first provider is not live (every tick
    evaluated once, in order), else polls every ``interval_s`` seconds.
    """

    def __init__(
        self,
        data_fetcher: QuoteFeed,
        cache_manager: QuoteSink | None,
        alert_manager: AlertManager,
        *,
        interval_s: float | None = None,
        on_quote: Callable[[StockData], None] | None = None,
    ) -> None:
        clock: MarketClock | None = None
        if not getattr(data_fetcher, "live", False):
            clock = getattr(data_fetcher, "clock", None)
        self.cache_manager = cache_manager
        self.alert_manager = alert_manager
        self.data_fetcher = data_fetcher
        self.service = MonitorService(
            data_fetcher,
            alert_manager,
            clock=clock,
            cache=cache_manager,
            interval_s=interval_s or (0.5 if clock is not None else 5.0),
            on_quote=on_quote,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._wired = False  # whether the cache is the alert manager's quotes (while running)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def add_symbol(self, symbol: str) -> bool:
        return await self.service.add_symbol(symbol)

    async def remove_symbol(self, symbol: str) -> bool:
        return await self.service.remove_symbol(symbol)

    async def start_monitoring(self, symbols: Sequence[str]) -> None:
        """Monitor ``symbols`` (added to the watched set) from now on, in the background;
        returns once the loop is started. Raises ``ValidationFailed`` for a bad symbol and
        ``RedisUnavailable`` when the store cannot record them (nothing is started then)."""
        for symbol in symbols:
            await self.add_symbol(symbol)
        if self.running:
            return
        connect = getattr(self.cache_manager, "connect", None)
        if connect is not None:
            await connect()
        self._wire_quotes()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(self._stop), name="stock-monitor")
        self._task.add_done_callback(_log_failure)

    def _wire_quotes(self) -> None:
        """While the loop runs, the cache (connected) is where the alert manager finds the
        latest quote a new alert is evaluated against at once, unless it has its own."""
        cache = self.cache_manager
        if self.alert_manager.quotes is None and isinstance(cache, LatestQuotes):
            self.alert_manager.quotes = cache
            self._wired = True
        if self.alert_manager.indicators is None:  # indicator rules read the fetcher's history
            self.alert_manager.use_indicators(IndicatorFeed(self.data_fetcher))

    def stop_monitoring(self) -> Stopping:
        """Ask the loop to stop; await the result to wait until it has (see the module
        docstring). Raises the error that ended the loop, if it already has."""
        self._stop.set()
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            error = task.exception()
            if error is not None:
                self._task = None  # raised once
                raise error
        return Stopping(self._wait_stopped)

    async def _wait_stopped(self) -> None:
        task = self._task
        if task is None:
            return
        try:
            # the loop ends within its shutdown bound; the margin covers closing the clients
            async with asyncio.timeout(self.service.shutdown_s + 5.0):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            if task.done():
                self._task = None

    async def __aenter__(self) -> StockMonitor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.stop_monitoring()
            return
        try:  # the body's error goes on; the loop's own was logged when it happened
            await self.stop_monitoring()
        except Exception as loop_error:
            log.debug("monitor loop error left for the body's error: %r", loop_error)

    async def _run(self, stop: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                # on Redis the fires are delivered from the outbox: this task owns that loop
                tg.create_task(self.alert_manager.run_deliveries(stop), name="alert-delivery")
                await self.service.run(stop)
        finally:
            if self._wired:  # the cache is closed: new alerts wait for the next run's ticks
                self.alert_manager.quotes = None
                self._wired = False
            close = getattr(self.cache_manager, "close", None)
            if close is not None:
                await close()
            await self.alert_manager.aclose()


def _log_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("the monitoring loop ended with an error", exc_info=error)
